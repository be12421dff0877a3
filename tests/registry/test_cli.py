"""Registry commands through the real CLI (embedded SQLite registry under PACKAGER_HOME)."""
from __future__ import annotations

import json
import os
import re

import pytest

from tests.conftest import run_cli


@pytest.fixture
def home(tmp_path):
    env = {**os.environ, "PACKAGER_HOME": str(tmp_path / "home")}
    env.pop("PACKAGER_REGISTRY", None)
    env.pop("PACKAGER_BLOBS", None)
    return env


def cli(env, *args):
    result = run_cli(*args, env=env)
    return result


def test_push_prints_ref_and_uuid_then_everything_reads_it(home, package_dirs, tmp_path):
    pushed = cli(home, "push", str(package_dirs["onnx"]), "--name", "fraud", "--param", "depth=6", "--metric", "accuracy=0.93",
                 "--tag", "team=fraud", "--alias", "production", "--description", "first cut")
    assert pushed.returncode == 0, pushed.stderr
    assert re.fullmatch(r"fraud@1 [0-9a-f-]{36}\n", pushed.stdout)
    cli(home, "push", str(package_dirs["int8"]), "--name", "fraud", "--metric", "accuracy=0.91")
    listing = json.loads(cli(home, "list", "fraud", "--json").stdout)
    assert [v["ref"] for v in listing] == ["fraud@2", "fraud@1"]
    shown = json.loads(cli(home, "show", "fraud@production", "--json").stdout)
    assert shown["params"] == {"depth": "6"} and shown["manifest"]["format"] == "onnx" and shown["lineage"]["environment"]["python"]
    found = json.loads(cli(home, "search", 'metric.accuracy > 0.92 and tag.team = "fraud"', "--json").stdout)
    assert [v["ref"] for v in found] == ["fraud@1"]
    compared = json.loads(cli(home, "compare", "fraud@1", "fraud@2", "--json").stdout)
    rows = {r["key"]: r for r in compared["rows"]}
    assert rows["metric.accuracy"]["values"] == [0.93, 0.91] and rows["metric.accuracy"]["differs"]
    assert rows["format"]["differs"] is False and rows["quantization"]["differs"] is True
    table = cli(home, "compare", "fraud@1", "fraud@2")
    assert "metric.accuracy" in table.stdout and table.returncode == 0
    pulled = cli(home, "pull", "fraud@2", "-o", str(tmp_path / "pulled"))
    assert (
        pulled.returncode == 0 and (tmp_path / "pulled" / "model.onnx").read_bytes() == (package_dirs["int8"] / "model.onnx").read_bytes()
    )


def test_alias_tag_delete_gc_verify(home, package_dirs):
    cli(home, "push", str(package_dirs["onnx"]), "--name", "m")
    cli(home, "push", str(package_dirs["int8"]), "--name", "m")
    assert cli(home, "alias", "set", "m@2", "production").stdout.strip() == "m@production -> m@2"
    assert json.loads(cli(home, "show", "m@production", "--json").stdout)["version"] == 2
    assert cli(home, "alias", "rm", "m", "production").returncode == 0
    missing = cli(home, "show", "m@production")
    assert missing.returncode == 14 and "m@production is not in the registry" in missing.stderr
    assert "stage=candidate" in cli(home, "tag", "m@1", "stage=candidate").stdout
    assert cli(home, "delete", "m@2").stdout.strip() == "deleted m@2"
    gc = json.loads(cli(home, "gc", "--json").stdout)
    assert gc["blobs_removed"] >= 2
    assert cli(home, "verify").stdout.strip().endswith("all blobs verified")


def test_verify_reports_corruption_by_version(home, package_dirs, tmp_path):
    info = json.loads(cli(home, "push", str(package_dirs["onnx"]), "--name", "m", "--json").stdout)
    shown = json.loads(cli(home, "show", info["ref"], "--json").stdout)
    model = next(f for f in shown["files"] if f["path"] == "model.onnx")
    blob = tmp_path / "home" / "objects" / "sha256" / model["digest"][:2] / model["digest"][2:]
    blob.write_bytes(b"garbage")
    result = cli(home, "verify")
    assert result.returncode == 12
    assert "corrupt  m@1  model.onnx" in result.stdout
    pulled = cli(home, "pull", "m@1", "-o", str(tmp_path / "out"))
    assert pulled.returncode == 12 and "m@1: model.onnx" in pulled.stderr and not (tmp_path / "out").exists()


def test_convert_push_records_lineage(home, fixtures, tmp_path):
    mlp = fixtures["mlp"]
    first = cli(home, "convert", mlp.model, "--to", "onnx", "--sample", mlp.sample, "-o", str(tmp_path / "a"), "--push", "mlp", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)[0]["pushed"] == "mlp@2"
    second = cli(
        home,
        "convert",
        mlp.model,
        "--to",
        "onnx",
        "--quantize",
        "--sample",
        mlp.sample,
        "-o",
        str(tmp_path / "b"),
        "--push",
        "mlp",
        "--json",
    )
    assert json.loads(second.stdout)[0]["pushed"] == "mlp@3"
    tree = cli(home, "lineage", "mlp@3")
    lines = tree.stdout.splitlines()
    assert lines[0].startswith("mlp@1 pickle") and "mlp@2 onnx" in lines[1] and "mlp@3 onnx dynamic" in lines[2]
    assert all("sha256:" in line for line in lines)


@pytest.mark.parametrize("args,code,message", [
    (("push", "{pkg}", "--name", "../escape"), 2, "invalid model name"),
    (("push", "{pkg}", "--name", "m", "--metric", "acc=high"), 2, "is not a number"),
    (("push", "{tmp}", "--name", "m"), 4, "is not a package"),
    (("list", "--registry", "nonsense://"), 2, "no registry backend for the URL"),
    (("search", "metric.x >"), 2, "ends too early"),
])
def test_bad_registry_input_is_one_clear_line(home, package_dirs, tmp_path, args, code, message):
    args = [a.format(pkg=package_dirs["onnx"], tmp=tmp_path) for a in args]
    result = cli(home, *args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
