"""A download with a progress bar on the analyst's terminal (bytes, rate, time left)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

from liveresponse.client.api import Client
from liveresponse.client.files import save_download


async def save_to_downloads(client: Client, download: dict[str, Any], directory: Path, err: TextIO) -> Path:
    if not err.isatty():
        return await save_download(client, download, directory)
    columns = (BarColumn(), DownloadColumn(binary_units=True), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=err), transient=True) as bar:
        task = bar.add_task("download", total=int(download["size"]))
        return await save_download(client, download, directory, lambda done, _total: bar.update(task, completed=done))
