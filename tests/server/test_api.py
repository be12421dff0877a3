"""The registry server, live on a loopback port: pushes and pulls through it are byte-identical and
deduplicated, concurrent clients lose nothing, tokens guard writes, the REST API answers as its
OpenAPI schema says (ETag, Range, typed errors)."""
from __future__ import annotations

import filecmp
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from packager.errors import NotFound, Unauthorized
from packager.registry.api import Registry
from tests.conftest import run_cli
from tests.server.conftest import TOKEN, remote
from tests.services import start_registry_server


def test_registry_url_selects_the_remote_client(server):
    from packager.registry.remote import RemoteRegistry

    assert isinstance(Registry(server), RemoteRegistry)


def test_push_then_pull_elsewhere_is_byte_identical_and_a_second_push_uploads_nothing(server, package_dirs, tmp_path):
    first = remote(server, TOKEN)
    info = first.push(package_dirs["onnx"], "served-mlp", params={"lr": "0.01"}, metrics={"accuracy": 0.97})
    assert first.bytes_uploaded > 0 and info.version >= 1
    again = remote(server, TOKEN)
    second = again.push(package_dirs["onnx"], "served-mlp")
    assert again.bytes_uploaded == 0 and again.blobs_uploaded == 0  # every blob was already there
    assert second.version == info.version + 1 and second.digest == info.digest
    env = {**os.environ, "PACKAGER_HOME": str(tmp_path / "other-home"), "PACKAGER_REGISTRY": server}
    pulled = run_cli("pull", info.ref, "-o", str(tmp_path / "pulled"), env=env)
    assert pulled.returncode == 0, pulled.stderr
    for path in Path(package_dirs["onnx"]).rglob("*"):
        if path.is_file():
            assert filecmp.cmp(path, tmp_path / "pulled" / path.relative_to(package_dirs["onnx"]), shallow=False), path


def test_cli_push_through_the_server_reports_uploaded_bytes(server, package_dirs, tmp_path):
    env = {**os.environ, "PACKAGER_REGISTRY": server, "PACKAGER_TOKEN": TOKEN}
    first = run_cli("push", str(package_dirs["ridge"]), "--name", "served-ridge", "--json", env=env)
    assert first.returncode == 0, first.stderr
    second = run_cli("push", str(package_dirs["ridge"]), "--name", "served-ridge", "--json", env=env)
    assert json.loads(first.stdout)["uploaded_bytes"] > 0 and json.loads(second.stdout)["uploaded_bytes"] == 0
    listed = run_cli("list", "served-ridge", "--json", env=env)
    assert [v["version"] for v in json.loads(listed.stdout)] == [2, 1]


def test_writes_need_the_token_and_nothing_is_written_without_it(server, package_dirs):
    anonymous = remote(server, None)
    with pytest.raises(Unauthorized, match="writing needs a valid token"):
        anonymous.push(package_dirs["int8"], "unauthorized-model")
    with pytest.raises(Unauthorized, match="not valid"):
        remote(server, "wrong").push(package_dirs["int8"], "unauthorized-model")
    with pytest.raises(NotFound):
        anonymous.get("unauthorized-model")  # reads are open: and nothing was recorded
    refused = run_cli("push", str(package_dirs["int8"]), "--name", "unauthorized-model", env={**os.environ, "PACKAGER_REGISTRY": server})
    assert refused.returncode == Unauthorized.exit_code and "PACKAGER_TOKEN" in refused.stderr and "Traceback" not in refused.stderr


def test_predict_runs_a_reference_pulled_through_the_server(server, package_dirs, fixtures, tmp_path):
    import pickle

    import numpy as np
    import pandas as pd

    remote(server, TOKEN).push(package_dirs["onnx"], "served-predict", aliases=["production"])
    rows = np.load(fixtures["mlp"].sample)
    np.save(tmp_path / "rows.npy", rows)
    env = {**os.environ, "PACKAGER_REGISTRY": server, "PACKAGER_HOME": str(tmp_path / "client-home")}
    for attempt in ("first", "cached"):
        done = run_cli(
            "predict", "served-predict@production", str(tmp_path / "rows.npy"), "-o", str(tmp_path / f"{attempt}.parquet"), env=env
        )
        assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "client-home" / "cache").iterdir())) == 1  # pulled once, then served from the cache
    with open(fixtures["mlp"].model, "rb") as handle:
        expected = pickle.load(handle).predict_proba(rows)
    got = pd.read_parquet(tmp_path / "cached.parquet")
    np.testing.assert_allclose(got[[c for c in got.columns if c.startswith("probabilities_")]].to_numpy(), expected, atol=1e-5)


def test_read_token_closes_reads_too(tmp_path):
    url, stop = start_registry_server(tmp_path / "home", _token_file(tmp_path), read_token=True)
    try:
        with pytest.raises(Unauthorized, match="reading this registry needs a token"):
            remote(url, None).list()
        assert remote(url, TOKEN).list() == []
    finally:
        stop()


def test_rest_api_aliases_tags_lineage_download(server, package_dirs):
    import httpx

    writer = remote(server, TOKEN)
    source = writer.push(package_dirs["onnx"], "api-model", tags={"team": "fraud"})
    child = writer.push(package_dirs["int8"], "api-model", parents=[source.id])
    http = httpx.Client(base_url=f"{server}/api/v1")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert http.put("/models/api-model/aliases/production", json={"ref": child.ref}, headers=auth).json()["aliases"] == ["production"]
    assert http.get("/versions/api-model@production").json()["version"] == child.version
    assert http.patch(f"/versions/{child.ref}/tags", json={"set": {"stage": "canary"}}, headers=auth).json()["tags"] == {
        "stage": "canary", "packager.check": "passed"}
    assert [v["ref"] for v in http.get("/search", params={"q": 'tag.stage = "canary"'}).json()] == [child.ref]
    tree = http.get(f"/versions/{child.ref}/lineage").json()
    assert tree["ref"] == source.ref and tree["children"][0]["ref"] == child.ref
    entry = next(f for f in writer.get(child.ref).files if f.path == "model.onnx")
    whole = http.get(f"/versions/{child.ref}/files/model.onnx")
    assert whole.status_code == 200 and whole.headers["etag"] == f'"{entry.digest}"' and len(whole.content) == entry.size
    part = http.get(f"/versions/{child.ref}/files/model.onnx", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == whole.content[10:20]
    assert http.get(f"/versions/{child.ref}/files/model.onnx", headers={"If-None-Match": f'"{entry.digest}"'}).status_code == 304
    missing = http.get("/versions/api-model@99")
    assert missing.status_code == 404 and missing.json()["error"] == "NotFound"
    assert http.delete(f"/versions/{child.ref}").status_code == 401
    assert http.delete(f"/versions/{child.ref}", headers=auth).json()["ref"] == child.ref
    schema = http.get("/openapi.json").json()
    assert {"/api/v1/models", "/api/v1/versions", "/api/v1/blobs/missing", "/api/v1/versions/{ref}/files/{path}"} <= set(schema["paths"])


def test_framework_errors_share_the_error_shape_and_405_names_every_method(server):
    import httpx

    http = httpx.Client(base_url=f"{server}/api/v1")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    wrong = http.post("/versions/mlp@1")
    assert wrong.status_code == 405 and set(wrong.headers["allow"].split(", ")) == {"GET", "DELETE"}
    assert wrong.json()["error"] == "UsageError"
    unknown = http.get("/no-such-thing")
    assert unknown.status_code == 404 and unknown.json()["message"] == "Not Found"
    unreadable = http.post("/blobs/missing", content=b"{not json", headers={**auth, "Content-Type": "application/json"})
    assert unreadable.status_code == 422 and unreadable.json()["error"] == "UsageError"
    digest = "0" * 64
    for files, field in [({"../escape": {"digest": digest, "size": 1}}, "files"), ({"a\\b": {"digest": digest, "size": 1}}, "files"),
                         ({"ok.onnx": {"digest": "xyz", "size": 1}}, "digest")]:
        refused = http.post("/versions", json={"name": "m", "manifest": {"format": "onnx"}, "files": files}, headers=auth)
        assert refused.status_code == 422 and field in refused.json()["message"], refused.text
    nan = http.post(
        "/versions",
        content=b'{"name": "m", "manifest": {}, "files": {"a": {"digest": "%s", "size": 1}}, "metrics": {"loss": NaN}}' % digest.encode(),
        headers={**auth, "Content-Type": "application/json"},
    )
    assert nan.status_code == 422 and "metrics.loss" in nan.json()["message"]


def test_a_manifest_holding_nan_is_served_with_null(server, server_home, package_dirs):
    """JSON has no NaN: a local push can record one (a validation diff of NaN outputs); the server must still answer."""
    import httpx

    local = Registry(f"sqlite:///{server_home / 'catalog.db'}", str(server_home / "objects"))
    pushed = local.push(package_dirs["ridge"], "nan-model")
    manifest = {**pushed.manifest, "validation": {"status": "failed", "max_abs_diff": float("nan")}}
    recorded = local.record("nan-model", manifest, list(pushed.files), pushed.lineage)
    served = httpx.get(f"{server}/api/v1/versions/{recorded.ref}")
    assert served.status_code == 200 and served.json()["manifest"]["validation"] == {"status": "failed", "max_abs_diff": None}
    assert served.json()["validation"] == "failed"


def test_conversion_lineage_through_the_server(server, fixtures, tmp_path):
    """push_conversion finds the source by file digest and the ONNX sibling by its children, over HTTP."""
    from packager.conversion import convert

    mlp = fixtures["mlp"]
    writer = remote(server, TOKEN)
    onnx = convert(mlp.model, to="onnx", sample=mlp.sample, out=tmp_path / "onnx")
    int8 = convert(mlp.model, to="onnx", quantize="dynamic", sample=mlp.sample, out=tmp_path / "int8")
    first = writer.push_conversion(onnx, "lineage-mlp", mlp.model)
    second = writer.push_conversion(int8, "lineage-mlp", mlp.model)
    assert (first.ref, second.ref) == ("lineage-mlp@2", "lineage-mlp@3")
    tree = writer.lineage("lineage-mlp@3")
    assert tree["ref"] == "lineage-mlp@1" and [c["ref"] for c in tree["children"]] == ["lineage-mlp@2"]
    assert tree["children"][0]["children"][0]["ref"] == "lineage-mlp@3"
    assert [v.ref for v in writer.children_of(first.id)] == ["lineage-mlp@3"]
    source_file = next(f for f in writer.get("lineage-mlp@1").files if f.role == "package" and f.path != "manifest.json")
    assert writer.find_by_file_digest("lineage-mlp", source_file.digest).ref == "lineage-mlp@1"
    assert writer.find_by_file_digest("lineage-mlp", "0" * 64) is None and writer.find_by_file_digest("no-such-model", "0" * 64) is None


@pytest.mark.s3
def test_downloads_from_s3_blobs_are_streamed_with_ranges(tmp_path, s3_blobs, package_dirs):
    """A server whose blobs live in S3 has no local file to hand to FileResponse: ranges are served from S3 reads."""
    import httpx

    url, stop = start_registry_server(tmp_path / "home", _token_file(tmp_path), blobs=s3_blobs)
    try:
        info = remote(url, TOKEN).push(package_dirs["onnx"], "s3-model")
        entry = next(f for f in info.files if f.path == "model.onnx")
        address = f"{url}/api/v1/versions/{info.ref}/files/model.onnx"
        whole = httpx.get(address)
        assert (
            whole.status_code == 200
            and whole.headers["etag"] == f'"{entry.digest}"'
            and hashlib.sha256(whole.content).hexdigest() == entry.digest
        )
        for asked, expected in [
            ("bytes=10-19", whole.content[10:20]),
            ("bytes=-7", whole.content[-7:]),
            (f"bytes={entry.size - 5}-", whole.content[-5:]),
            (f"bytes=0-{entry.size + 100}", whole.content),
        ]:
            part = httpx.get(address, headers={"Range": asked})
            assert part.status_code == 206 and part.content == expected, asked
            assert part.headers["content-range"].endswith(f"/{entry.size}") and int(part.headers["content-length"]) == len(expected)
        beyond = httpx.get(address, headers={"Range": f"bytes={entry.size}-"})
        assert (
            beyond.status_code == 416
            and beyond.headers["content-range"] == f"bytes */{entry.size}"
            and beyond.json()["error"] == "UsageError"
        )
        assert httpx.get(address, headers={"Range": "bytes=0-1,5-6"}).content == whole.content  # several ranges: the whole file
        pulled = remote(url, None).pull(info.ref, tmp_path / "pulled")
        assert filecmp.cmp(pulled / "model.onnx", Path(package_dirs["onnx"]) / "model.onnx", shallow=False)
    finally:
        stop()


@pytest.mark.postgres
@pytest.mark.s3
def test_a_store_that_goes_away_is_a_503_naming_it_not_a_traceback(tmp_path, package_dirs):
    """Its own PostgreSQL and S3 endpoint, stopped mid-test: reads answer 503 CatalogError, the client raises CatalogError."""
    import httpx

    from packager.errors import CatalogError
    from tests.services import make_bucket, start_moto, start_postgres

    catalog, stop_catalog = start_postgres()
    endpoint, stop_s3 = start_moto()
    make_bucket(endpoint, "gone")
    server_env = {"PACKAGER_REGISTRY": catalog, "PACKAGER_S3_ENDPOINT": endpoint}
    url, stop = start_registry_server(tmp_path / "home", _token_file(tmp_path), blobs="s3://gone/blobs", env=server_env)
    try:
        info = remote(url, TOKEN).push(package_dirs["ridge"], "fragile")
        stop_s3()
        download = httpx.get(f"{url}/api/v1/versions/{info.ref}/files/model.onnx", timeout=120)
        assert (
            download.status_code == 503 and download.json()["error"] == "CatalogError" and "s3://gone/blobs" in download.json()["message"]
        )
        stop_catalog()
        listing = httpx.get(f"{url}/api/v1/models", timeout=60)
        assert listing.status_code == 503 and "cannot read the catalog" in listing.json()["message"]
        with pytest.raises(CatalogError, match="cannot read the catalog"):
            remote(url, None).list()
    finally:
        stop()
        stop_s3()
        stop_catalog()


def _token_file(folder: Path) -> Path:
    path = folder / "tokens"
    path.write_text(TOKEN + "\n")
    return path


def test_a_corrupted_upload_is_refused(server):
    import hashlib

    import httpx

    digest = hashlib.sha256(b"the real bytes").hexdigest()
    response = httpx.put(f"{server}/api/v1/blobs/sha256/{digest}", content=b"other bytes", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 409 and response.json()["error"] == "BlobCorrupt"
    assert httpx.post(f"{server}/api/v1/blobs/missing", json={"digests": [digest]}, headers={"Authorization": f"Bearer {TOKEN}"}).json()[
        "missing"
    ] == [digest]


def _push_many(url: str, package: str, client: int, count: int) -> list[tuple[str, int, float, float]]:
    """(id, client, start, end) of each push: time.monotonic() is one clock for every process on the machine."""
    import time

    from packager.registry.remote import RemoteRegistry

    registry = RemoteRegistry(url, token=TOKEN)
    pushes = []
    for i in range(count):
        start = time.monotonic()
        pushed = registry.push(package, "concurrent-model", params={"client": str(client), "i": str(i)})
        pushes.append((pushed.id, client, start, time.monotonic()))
    return pushes


@pytest.mark.slow
def test_four_clients_pushing_10_each_lose_nothing(server, package_dirs):
    """Was 25 pushes each (95 s of the suite). The four clients are forked from this process, so they push from the
    first moment; with 10 each, the server still serves pushes of several clients at once, which the test now proves
    (most pushes overlap another client's push) instead of assuming."""
    clients, pushes = 4, 10
    with ProcessPoolExecutor(clients) as pool:
        batches = pool.map(_push_many, [server] * clients, [str(package_dirs["ridge"])] * clients, range(clients), [pushes] * clients)
        spans = [push for batch in batches for push in batch]
    assert len({push_id for push_id, *_ in spans}) == clients * pushes
    contended = sum(any(c != d and s < e2 and s2 < e for _, d, s2, e2 in spans) for _, c, s, e in spans)
    assert contended >= 0.75 * len(spans), f"only {contended} of {len(spans)} pushes overlapped another client's push"
    versions = remote(server, None).list("concurrent-model")
    assert sorted(v.version for v in versions) == list(range(1, clients * pushes + 1))
    expected = {(str(c), str(i)) for c in range(clients) for i in range(pushes)}
    assert {(v.params["client"], v.params["i"]) for v in versions} == expected


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_an_anonymous_large_body_is_refused_before_it_is_read(tmp_path):
    """The token is checked on the headers first: a 12 MB JSON body without a token grew the server by 84 MB."""
    import httpx

    token_file = tmp_path / "tokens"
    token_file.write_text(TOKEN + "\n")
    url, stop = start_registry_server(tmp_path, token_file)
    try:
        params = b", ".join(b'"p%d": "%d"' % (i, i) for i in range(800_000))
        body = b'{"name": "m", "manifest": {}, "files": {}, "params": {' + params + b"}}"
        assert len(body) > 12_000_000
        http = httpx.Client(base_url=f"{url}/api/v1", timeout=60)
        http.get("/models")
        before = _rss_kib(stop.pid)
        for _ in range(3):
            refused = http.post("/versions", content=body, headers={"Content-Type": "application/json"})
            assert refused.status_code == 401 and refused.json()["error"] == "Unauthorized"
        grown = _rss_kib(stop.pid) - before
        assert grown < 8 * 1024, f"the server grew by {grown} KiB"
        too_large = http.post("/versions", content=body, headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
        assert too_large.status_code == 413
        assert too_large.json() == {"error": "RequestTooLarge", "hint": too_large.json()["hint"],
                                    "message": f"the request body is {len(body)} bytes, over this endpoint's limit of 1 MiB"}
        assert "blob" in too_large.json()["hint"]
        assert _rss_kib(stop.pid) - before < 8 * 1024
    finally:
        stop()


def test_bodies_without_a_length_are_cut_at_the_limit_and_blobs_have_their_own(server):
    import httpx

    auth = {"Authorization": f"Bearer {TOKEN}"}

    def chunks(count: int, size: int = 256 * 1024):
        for _ in range(count):
            yield b" " * size

    json_type = {**auth, "Content-Type": "application/json"}
    chunked = httpx.post(f"{server}/api/v1/blobs/missing", content=chunks(8), headers=json_type, timeout=60)
    assert chunked.status_code == 413 and chunked.json()["error"] == "RequestTooLarge" and "1 MiB" in chunked.json()["message"]
    blob = b"\0" * (3 << 20)  # over the JSON limit, far under the blob limit
    digest = hashlib.sha256(blob).hexdigest()
    uploaded = httpx.put(f"{server}/api/v1/blobs/sha256/{digest}", content=blob, headers=auth, timeout=60)
    assert uploaded.status_code == 200 and uploaded.json() == {"digest": digest, "size": len(blob)}
    import socket
    from urllib.parse import urlsplit

    host = urlsplit(server)
    with socket.create_connection((host.hostname, host.port), timeout=30) as raw:  # a declared 17 GiB, not one byte of it sent
        raw.sendall(f"PUT /api/v1/blobs/sha256/{'0' * 64} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                    f"Content-Length: {17 << 30}\r\n\r\n".encode())
        answer = b""
        while not answer.endswith(b"}") and (chunk := raw.recv(65536)):
            answer += chunk
        answer = answer.decode()
    assert answer.startswith("HTTP/1.1 413") and '"error":"RequestTooLarge"' in answer and "16 GiB" in answer


def test_deep_searches_are_400_on_the_api_and_a_message_in_the_ui(server):
    import httpx

    for q in ["(" * 300 + "format = onnx" + ")" * 300, "not " * 495 + "format = onnx"]:
        api = httpx.get(f"{server}/api/v1/search", params={"q": q})
        assert api.status_code == 400 and api.json()["error"] == "UsageError" and "more than 20 deep" in api.json()["message"]
        page = httpx.get(f"{server}/", params={"q": q})
        assert page.status_code == 200 and "more than 20 deep" in page.text
    wide = httpx.get(f"{server}/api/v1/search", params={"q": " and ".join(["format = onnx"] * 60)})
    assert wide.status_code == 400 and "more than 50 comparisons" in wide.json()["message"]
