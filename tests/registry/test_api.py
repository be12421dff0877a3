"""Registry behaviour on both backends (SQLite + folder, PostgreSQL + S3 via a real moto server)."""
from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest

from packager.errors import BlobCorrupt, NotFound, UsageError
from packager.registry.api import Registry
from packager.registry.catalog import schema_revision


def _same_tree(a: Path, b: Path) -> bool:
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    return names == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()) and all(
        filecmp.cmp(a / n, b / n, shallow=False) for n in names
    )


def test_push_pull_round_trip_is_byte_identical(registry, package_dirs, tmp_path):
    info = registry.push(package_dirs["onnx"], "fraud", description="first")
    assert info.ref == "fraud@1" and len(info.id) == 36
    pulled = registry.pull("fraud@1", tmp_path / "pulled")
    assert _same_tree(package_dirs["onnx"], pulled)


def test_identical_content_is_stored_once(registry, blob_store, package_dirs):
    registry.push(package_dirs["onnx"], "fraud")
    before = sorted(blob_store.digests())
    second = registry.push(package_dirs["onnx"], "fraud")
    assert second.version == 2
    assert sorted(blob_store.digests()) == before
    assert registry.get("fraud@1").digest == second.digest


def test_references_resolve(registry, package_dirs):
    one = registry.push(package_dirs["onnx"], "fraud", aliases=["production"])
    two = registry.push(package_dirs["int8"], "fraud")
    assert registry.get("fraud").id == two.id
    assert registry.get("fraud@production").id == one.id
    assert registry.get(f"fraud@sha256:{two.digest}").id == two.id
    assert registry.get(one.id).ref == "fraud@1"
    with pytest.raises(NotFound, match="fraud@7 is not in the registry"):
        registry.get("fraud@7")


def test_alias_moves_atomically(registry, package_dirs):
    registry.push(package_dirs["onnx"], "fraud", aliases=["production"])
    registry.push(package_dirs["int8"], "fraud")
    moved = registry.set_alias("fraud@2", "production")
    assert moved.aliases == ("production",)
    assert registry.get("fraud@1").aliases == ()
    assert registry.get("fraud@production").version == 2
    registry.remove_alias("fraud", "production")
    with pytest.raises(NotFound):
        registry.get("fraud@production")


def test_tags_params_metrics_and_list(registry, package_dirs):
    registry.push(package_dirs["onnx"], "fraud", params={"depth": 6}, metrics={"accuracy": "0.93"}, tags={"team": "risk"})
    registry.push(package_dirs["ridge"], "prices")
    tagged = registry.tag("fraud@1", {"stage": "candidate"}, remove=["team"])
    assert (
        tagged.tags == {"stage": "candidate", "packager.check": "passed"}
        and tagged.params == {"depth": "6"}
        and tagged.metrics == {"accuracy": 0.93}
    )
    assert [v.ref for v in registry.list()] == ["fraud@1", "prices@1"]
    registry.push(package_dirs["int8"], "fraud")
    assert [v.ref for v in registry.list("fraud")] == ["fraud@2", "fraud@1"]


def test_non_finite_metrics_and_unknown_parents_are_refused_before_anything_is_recorded(registry, package_dirs):
    for bad in (float("nan"), "inf", float("-inf")):
        with pytest.raises(UsageError, match="not a finite number"):
            registry.push(package_dirs["onnx"], "fraud", metrics={"loss": bad})
    with pytest.raises(NotFound, match="fraud@7"):
        registry.push(package_dirs["onnx"], "fraud", parents=["fraud@7"])
    assert registry.list() == []


def test_parents_are_given_by_reference_or_id(registry, package_dirs):
    source = registry.push(package_dirs["onnx"], "fraud")
    by_ref = registry.push(package_dirs["int8"], "fraud", parents=["fraud@1"])
    by_id = registry.push(package_dirs["int8"], "fraud-copy", parents=[source.id])
    assert by_ref.parents == (source.id,) and by_id.parents == (source.id,)
    assert sorted(child["ref"] for child in registry.lineage("fraud@1")["children"]) == ["fraud-copy@1", "fraud@2"]


def test_delete_then_gc_frees_only_unreferenced_blobs(registry, blob_store, package_dirs):
    registry.push(package_dirs["onnx"], "fraud")
    registry.push(package_dirs["int8"], "fraud")
    int8_model = json.loads((package_dirs["int8"] / "manifest.json").read_text())["files"]["model.onnx"]
    registry.delete("fraud@2")
    assert int8_model in set(blob_store.digests())
    result = registry.gc()
    assert result["blobs_removed"] >= 2
    assert int8_model not in set(blob_store.digests())
    assert registry.verify() == []
    assert registry.get("fraud@1").version == 1


def test_corrupt_blob_is_detected_by_pull_and_verify(tmp_path, package_dirs):
    registry = Registry(f"sqlite:///{tmp_path / 'c.db'}", str(tmp_path / "objects"))
    info = registry.push(package_dirs["onnx"], "fraud")
    model = next(f for f in info.files if f.path == "model.onnx")
    blob = tmp_path / "objects" / "sha256" / model.digest[:2] / model.digest[2:]
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(BlobCorrupt, match="fraud@1: model.onnx: blob sha256:.* is corrupt"):
        registry.pull("fraud@1", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    problems = registry.verify()
    assert problems == [{"ref": "fraud@1", "path": "model.onnx", "digest": model.digest, "problem": "corrupt"}]
    blob.unlink()
    assert registry.verify()[0]["problem"] == "missing"


def test_lineage_is_captured(registry, package_dirs, tmp_path):
    data = tmp_path / "train.csv"
    data.write_text("a,b\n1,2\n3,4\n")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.11\n")
    info = registry.push(package_dirs["onnx"], "fraud", data=[str(data), "s3://lake/snapshots/2026-11-01"], dockerfile=dockerfile)
    lineage = info.lineage
    assert lineage["environment"]["python"].startswith("3.11")
    assert lineage["environment"]["packages"]["onnxruntime"]
    assert lineage["git"]["commit"] and len(lineage["git"]["commit"]) == 40  # the tests run inside the project's repo
    local, remote = lineage["data"]
    assert local["rows"] == 2 and local["size"] == data.stat().st_size and len(local["sha256"]) == 64
    assert remote == {"uri": "s3://lake/snapshots/2026-11-01", "sha256": None, "size": None, "rows": None}
    paths = {f.path for f in info.files if f.role == "lineage"}
    assert paths == {"lineage/pip-freeze.txt", "lineage/Dockerfile"}
    assert lineage["dockerfile"]["path"] == "lineage/Dockerfile"


def test_conversion_lineage_tree(registry, fixtures, tmp_path):
    from packager.conversion import convert

    mlp = fixtures["mlp"]
    onnx = convert(mlp.model, to="onnx", sample=mlp.sample, out=tmp_path / "onnx")
    int8 = convert(mlp.model, to="onnx", quantize="dynamic", sample=mlp.sample, out=tmp_path / "int8")
    first = registry.push_conversion(onnx, "mlp", mlp.model)
    second = registry.push_conversion(int8, "mlp", mlp.model)
    assert (first.ref, second.ref) == ("mlp@2", "mlp@3")  # the source pickle became mlp@1
    source = registry.get("mlp@1")
    assert source.format == "pickle" and source.validation == "source"
    tree = registry.lineage("mlp@3")
    assert tree["ref"] == "mlp@1"
    assert [c["ref"] for c in tree["children"]] == ["mlp@2"]
    assert tree["children"][0]["children"][0] == {
        **tree["children"][0]["children"][0],
        "ref": "mlp@3",
        "quantization": "dynamic",
        "focus": True,
    }


def test_schema_is_migrated_to_head(local_only):
    assert schema_revision(local_only.engine) == "0002"


def test_credentials_are_stripped_from_remotes():
    from packager.registry.lineage import strip_credentials

    assert strip_credentials("https://alice:s3cret@github.example/org/repo.git") == "https://github.example/org/repo.git"
    assert strip_credentials("https://token@host/repo") == "https://host/repo"
    assert strip_credentials("git@github.example:org/repo.git") == "git@github.example:org/repo.git"


def test_git_remote_is_captured_without_credentials(tmp_path, package_dirs):
    import subprocess

    repo = tmp_path / "training-code"
    repo.mkdir()
    for args in (["init", "-q", "-b", "trainer"], ["remote", "add", "origin", "https://bob:hunter2@git.example/ml/train.git"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "train.py").write_text("print('fit')\n")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], cwd=repo, check=True)
    (repo / "train.py").write_text("print('fit more')\n")
    registry = Registry(f"sqlite:///{tmp_path / 'c.db'}", str(tmp_path / "o"))
    info = registry.push(package_dirs["onnx"], "m", capture_cwd=repo, lineage={"note": "override wins"})
    git = info.lineage["git"]
    assert git["remote"] == "https://git.example/ml/train.git" and git["branch"] == "trainer" and git["dirty"] is True
    assert info.lineage["note"] == "override wins"


def test_pull_never_writes_outside_its_folder(tmp_path, package_dirs):
    from sqlalchemy import update

    from packager.registry import schema

    registry = Registry(f"sqlite:///{tmp_path / 'c.db'}", str(tmp_path / "objects"))
    info = registry.push(package_dirs["onnx"], "m")
    with registry.engine.begin() as conn:  # a tampered catalog row
        conn.execute(
            update(schema.files)
            .where(schema.files.c.version_id == info.id, schema.files.c.path == "model.onnx")
            .values(path="../../escaped.onnx")
        )
    with pytest.raises(BlobCorrupt, match="outside the package folder"):
        registry.pull("m@1", tmp_path / "deep" / "out")
    assert not (tmp_path / "escaped.onnx").exists() and not (tmp_path / "deep" / "out").exists()


def test_model_summaries_count_versions_and_formats(registry, package_dirs):
    registry.push(package_dirs["onnx"], "a")
    registry.push(package_dirs["int8"], "a")
    registry.push(package_dirs["onnx"], "b")
    assert registry.model_summaries() == [{"name": "a", "versions": 2, "formats": ["onnx"]},
                                          {"name": "b", "versions": 1, "formats": ["onnx"]}]
    assert [s["name"] for s in registry.model_summaries(["b", "nobody"])] == ["b"]
