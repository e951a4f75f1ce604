"""Kernel modules (``drivers``): /proc/modules when present, else /sys/module.

/proc/modules lists loadable modules with size, users and state. Without it
(some containers) /sys/module is read: ``initstate`` and ``coresize`` exist for
loadable modules only, so a directory without them is a built-in module
(state ``builtin``, size null). States are lower-case (``live``, ``loading``,
``unloading``, ``builtin``).

Each module is enriched from ``/lib/modules/<release>``: ``path`` from
modules.dep, ``version`` from /sys/module/NAME/version or the file's
.modinfo, ``signer`` from the appended signature (``modfile.py``). When that
tree is missing (this container) they are null and ``details_reason`` says why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from liveresponse.agent.platform.linux.modfile import modinfo_fields, modinfo_section, read_module, signer_of

Row = dict[str, Any]


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def module_name(file_name: str) -> str:
    """``kernel/drivers/net/e1000e.ko.zst`` -> ``e1000e``; dashes are underscores to the kernel."""
    base = os.path.basename(file_name)
    return base.split(".ko", 1)[0].replace("-", "_")


def parse_proc_modules(text: str) -> list[Row]:
    rows: list[Row] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        used_by = [name for name in fields[3].split(",") if name and name != "-"]
        taint = fields[6].strip("()") if len(fields) > 6 and fields[6].startswith("(") else None
        rows.append(
            {
                "name": fields[0],
                "size": int(fields[1]),
                "refcount": int(fields[2]) if fields[2].isdigit() else None,
                "used_by": used_by,
                "state": fields[4].lower(),
                "taint": taint,
            }
        )
    return rows


def read_sys_modules(sys_module: str) -> list[Row]:
    rows: list[Row] = []
    for name in sorted(os.listdir(sys_module)):
        base = f"{sys_module}/{name}"
        state = _read_text(f"{base}/initstate")
        size = _read_text(f"{base}/coresize")
        refcount = _read_text(f"{base}/refcnt")
        try:
            holders = sorted(os.listdir(f"{base}/holders"))
        except OSError:
            holders = []
        rows.append(
            {
                "name": name,
                "size": int(size) if size and size.isdigit() else None,
                "refcount": int(refcount) if refcount and refcount.isdigit() else None,
                "used_by": holders,
                "state": state.lower() if state else "builtin",
                "taint": _read_text(f"{base}/taint") or None,
            }
        )
    return rows


def module_paths(modules_dir: str) -> dict[str, str]:
    """name -> absolute path of the module file, from modules.dep."""
    paths: dict[str, str] = {}
    text = _read_text(f"{modules_dir}/modules.dep")
    for line in (text or "").splitlines():
        relative = line.split(":", 1)[0].strip()
        if relative:
            full = relative if relative.startswith("/") else f"{modules_dir}/{relative}"
            paths.setdefault(module_name(relative), full)
    return paths


def list_drivers(
    proc: str = "/proc", sys_module: str = "/sys/module", lib_modules: str = "/lib/modules", release: str | None = None
) -> Iterator[Row]:
    text = _read_text(f"{proc}/modules")
    if text is not None:
        rows, source = parse_proc_modules(text), f"{proc}/modules"
    else:
        rows, source = read_sys_modules(sys_module), sys_module
    release = release or os.uname().release
    modules_dir = f"{lib_modules}/{release}"
    has_tree = os.path.isdir(modules_dir)
    paths = module_paths(modules_dir) if has_tree else {}
    for row in rows:
        path = paths.get(row["name"])
        version = _read_text(f"{sys_module}/{row['name']}/version")
        signer = None
        reason = None if has_tree else f"{modules_dir} is absent: path, version and signer unknown"
        if path:
            image = read_module(path)
            if image is not None:
                version = version or modinfo_section(image).get("version")
                signer = signer_of(image)
            else:
                fields = modinfo_fields(path)
                version, signer = version or fields.get("version"), fields.get("signer")
        elif has_tree and row["state"] != "builtin":
            reason = f"{row['name']} is not in {modules_dir}/modules.dep"
        yield {
            "name": row["name"],
            "size": row["size"],
            "used_by": row["used_by"],
            "state": row["state"],
            "path": path,
            "version": version,
            "signer": signer,
            "refcount": row["refcount"],
            "taint": row["taint"],
            "source": source,
            "details_reason": reason,
        }
