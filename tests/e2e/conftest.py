"""One real server and one real agent on loopback for the whole e2e session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from liveresponse.testing.cluster import Cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield running
    finally:
        running.stop()
