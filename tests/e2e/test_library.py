"""The tenant library over the real CLI, API and console (SPEC §3, §5, §7): fields, overwrite, names, limits."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx

from liveresponse.testing.cluster import Cluster
from tests.e2e.library_helpers import json_documents, lr, setting, upload

FIELDS = {
    "name", "size", "sha256", "description", "has_parameters", "parameters_description",
    "created_by", "created", "updated",
}  # fmt: skip


def test_upload_list_overwrite_delete(cluster: Cluster, tmp_path: Path) -> None:
    script = tmp_path / "lib-collect.sh"
    script.write_bytes(b"echo one\n")
    row = upload(cluster, script, "--description", "collects things", "--parameters-description", "-v: verbose")
    assert row["name"] == "lib-collect.sh" and row["size"] == 9 and row["replaced"] is False

    listed = lr(cluster, "library", "list", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    (mine,) = [r for r in json.loads(listed.stdout) if r["name"] == "lib-collect.sh"]
    assert set(mine) >= FIELDS
    assert mine["description"] == "collects things"
    assert mine["has_parameters"] is True and mine["parameters_description"] == "-v: verbose"
    assert mine["created_by"] == "alice"
    assert len(mine["sha256"]) == 64

    script.write_bytes(b"echo two\n")
    again = lr(cluster, "library", "upload", str(script))
    assert again.returncode == 1
    assert "already exists" in again.stderr and "--overwrite" in again.stderr
    replaced = upload(cluster, script, "--overwrite")
    assert replaced["replaced"] is True and replaced["sha256"] != mine["sha256"]
    assert replaced["created"] == mine["created"] and replaced["updated"] != mine["updated"]

    # The console's library command (advanced tier, answered by the server) lists it and deletes it.
    result = cluster.console(
        "library -output json", "library delete lib-collect.sh -output json", "library -output json"
    )
    assert result.returncode == 0, result.stderr
    before, deleted, after = json_documents(result.stdout)
    assert isinstance(before, list) and isinstance(deleted, list) and isinstance(after, list)
    assert "lib-collect.sh" in {r["name"] for r in before}
    assert deleted[0]["name"] == "lib-collect.sh" and deleted[0]["deleted"] is True
    assert "lib-collect.sh" not in {r["name"] for r in after}

    # Every change is in the audit chain.
    db = sqlite3.connect(cluster.data / "liveresponse.db")
    try:
        events = [e for (e,) in db.execute("SELECT event FROM audit WHERE event LIKE 'library.%'")]
    finally:
        db.close()
    assert events.count("library.upload") >= 2 and "library.delete" in events
    assert cluster.admin("audit", "verify").returncode == 0


def test_library_delete_needs_library_manage(cluster: Cluster, tmp_path: Path) -> None:
    script = tmp_path / "lib-keep.sh"
    script.write_bytes(b"true\n")
    upload(cluster, script, "--overwrite")
    result = cluster.console("library delete lib-keep.sh", user="adam")  # advanced-responder: no library.manage
    assert result.returncode == 1
    assert "library.manage" in result.stderr
    listed = cluster.console("library -output json", user="adam")
    assert "lib-keep.sh" in {r["name"] for r in json.loads(listed.stdout)}
    refused = cluster.console("library", user="rita")  # responder: the advanced tier is missing
    assert refused.returncode == 1 and "live_response.advanced" in refused.stderr


def test_names_with_a_slash_or_traversal_are_refused(cluster: Cluster) -> None:
    with cluster.api("alice") as api:
        for name in ("a%2Fb", "%2E%2E", "..%2Fx", "a%5Cb", "sp%20ace", "semi%3Bcolon"):
            response = api.put(f"/api/v1/library/{name}", content=b"x")
            assert response.status_code == 400, (name, response.text)
            assert response.json()["error"]["code"] == "bad_library_name"
        nested = api.put("/api/v1/library/dir/file.sh", content=b"x")
        assert nested.status_code == 400 and "slash" in nested.json()["error"]["message"]
        names = {r["name"] for r in api.get("/api/v1/library").json()}
    assert not {"a/b", "..", "dir/file.sh"} & names
    cli = lr(cluster, "library", "delete", "../x")
    assert cli.returncode == 1 and "traversal" in cli.stderr


def test_size_limit_is_exact_on_every_path(cluster: Cluster, tmp_path: Path) -> None:
    limit = 1000
    at_limit = tmp_path / "lib-at-limit.bin"
    at_limit.write_bytes(b"a" * limit)
    over = tmp_path / "lib-over.bin"
    over.write_bytes(b"b" * (limit + 1))
    with setting(cluster, "library_max_bytes", str(limit), "262144000"):
        assert upload(cluster, at_limit, "--overwrite")["size"] == limit
        refused = lr(cluster, "library", "upload", str(over))
        assert refused.returncode == 1
        assert f"library_max_bytes={limit} bytes" in refused.stderr

        # The streaming path (no Content-Length, chunked) counts the bytes as they arrive.
        def chunks() -> object:
            yield b"c" * 600
            yield b"c" * 401

        with cluster.api("alice") as api:
            streamed = api.put("/api/v1/library/lib-streamed.bin", content=chunks())  # type: ignore[arg-type]
            assert streamed.status_code == 413, streamed.text
            assert streamed.json()["error"]["max_bytes"] == limit
            exact = api.put("/api/v1/library/lib-streamed.bin", content=iter([b"d" * 500, b"d" * 500]))
            assert exact.status_code == 200, exact.text
            names = {r["name"] for r in api.get("/api/v1/library").json()}
    assert "lib-over.bin" not in names
    assert not list((cluster.data / "blobs" / "tmp").iterdir())  # nothing half-written left behind


def test_library_api_needs_its_permissions(cluster: Cluster) -> None:
    with cluster.api("adam") as api:  # advanced-responder: may list, may not upload
        assert api.get("/api/v1/library").status_code == 200
        denied = api.put("/api/v1/library/lib-x.sh", content=b"x")
        assert denied.status_code == 403 and denied.json()["error"]["permission"] == "library.manage"
    with httpx.Client(base_url=cluster.url, verify=cluster.tls()) as anonymous:
        assert anonymous.get("/api/v1/library").status_code == 401
        fetch = anonymous.get("/agent/v1/blobs/" + "0" * 64, params={"ticket": "guess"})
        assert fetch.status_code == 404
