"""Every file of the attack corpus is refused with a clear one-line error, and its payload's side
effect (creating the marker file) never happens; benign files of every framework still load."""
from __future__ import annotations

import shutil

import pytest

from packager.errors import InputFileError, PackagerError, UnsafeModelError, UnsupportedConversion
from tests.attacks.build_corpus import benign_keras, benign_torch, build


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    marker = root / "PWNED"
    benign = benign_keras(benign_torch(root / "benign"))
    return build(root / "attacks", str(marker), benign), marker, benign


def _refusal(load, attack) -> str | None:
    """None when refused as expected, else what went wrong."""
    expected = {"unsafe": UnsafeModelError, "input": InputFileError, "either": (UnsafeModelError, InputFileError),
                "harmless": (UnsafeModelError, InputFileError, UnsupportedConversion)}[attack.expect]
    try:
        load(attack.path)
    except expected as exc:
        line = exc.one_line()
        if "\n" in line or len(line) > 600 or not exc.hint:
            return f"unclear message: {line!r}"
        return None
    except PackagerError as exc:
        return f"wrong error type {type(exc).__name__}: {exc.one_line()}"
    except Exception as exc:  # anything else escaping is a defect
        return f"unexpected {type(exc).__name__}: {exc}"
    return "loaded without complaint"


def test_corpus_is_large_enough(corpus):
    attacks, _, _ = corpus
    assert len([a for a in attacks if a.expect == "unsafe"]) >= 30
    assert len(attacks) >= 50


@pytest.mark.parametrize("entry", ["inspect", "convert"])
def test_every_attack_is_refused_by_the_static_checks_without_side_effects(corpus, entry, tmp_path, static_checks_here):
    """The whole corpus against the static checks, in this process (no sandbox behind them: a gap would run the payload)."""
    from packager.conversion import convert
    from packager.inspection import inspect

    attacks, marker, _ = corpus
    load = inspect if entry == "inspect" else (lambda path: convert(path, to="onnx", out=tmp_path / path.name))
    failures = {a.name: why for a in attacks if (why := _refusal(load, a))}
    assert failures == {}
    assert not marker.exists(), "a payload ran"
    assert not any(tmp_path.iterdir()), "a refused conversion left files behind"


def _one_per_family(attacks: list) -> list:
    seen, chosen = set(), []
    for attack in attacks:
        kind = (attack.path.parent.name, attack.path.suffix or "folder", attack.expect)
        if kind not in seen:
            seen.add(kind)
            chosen.append(attack)
    return chosen


@pytest.mark.parametrize("entry", ["inspect", "convert"])
def test_the_user_path_refuses_attacks_the_same_way(corpus, entry, tmp_path):
    """As users call it (the sandbox child doing the checks): one attack per family, file kind and expected error gets the
    same typed one-line refusal, and nothing is left behind."""
    from packager.conversion import convert
    from packager.inspection import inspect

    attacks, marker, _ = corpus
    sample = _one_per_family(attacks)
    assert len(sample) >= 15
    load = inspect if entry == "inspect" else (lambda path: convert(path, to="onnx", out=tmp_path / path.name))
    failures = {a.name: why for a in sample if (why := _refusal(load, a))}
    assert failures == {}
    assert not marker.exists(), "a payload ran"
    assert not any(tmp_path.iterdir()), "a refused conversion left files behind"


def test_refusals_name_the_offending_import_and_offset(corpus):
    from packager.inspection import inspect

    attacks, _, _ = corpus
    by_name = {a.name: a.path for a in attacks}
    with pytest.raises(UnsafeModelError, match=r"imports os\.system at byte \d+"):
        inspect(by_name["stack_global_memo.pkl"])
    with pytest.raises(UnsafeModelError, match=r"data\.pkl imports os\.system at byte \d+"):
        inspect(by_name["torchscript_evil_data_pkl.pt"])
    with pytest.raises(UnsafeModelError, match=r"model/inner/wrap.* is a Lambda layer|deep_evil is a Lambda layer"):
        inspect(by_name["lambda_nested_submodel.keras"])
    with pytest.raises(UnsafeModelError, match=r"model\.pt:.*data\.pkl imports os\.system"):
        inspect(by_name["pt2_nested_evil_archive.pt2"])
    with pytest.raises(UnsafeModelError, match="escapes its folder"):
        inspect(by_name["traversal_torchscript.pt"])
    with pytest.raises(UnsafeModelError, match="zip bomb"):
        inspect(by_name["bomb.skops"])


def test_benign_torch_files_pass_the_check_and_load_safely(corpus):
    import torch

    from packager.safety import check_file

    _, _, benign = corpus
    for name, fmt in (("state.pth", "torch"), ("script.pt", "torchscript"), ("program.pt2", "pt2")):
        check_file(benign / name, fmt)
    state = torch.load(benign / "state.pth", weights_only=True)
    assert set(state) >= {"fc.weight", "bn.running_mean"}
    scripted = torch.jit.load(benign / "script.pt")
    program = torch.export.load(benign / "program.pt2")
    x = torch.randn(2, 4)  # the exported program was traced with a static batch of 2
    torch.testing.assert_close(scripted(x), program.module()(x))


def test_benign_keras_files_pass_the_check_and_load_in_safe_mode(corpus):
    import keras
    import numpy as np

    from packager.safety import check_file

    _, _, benign = corpus
    check_file(benign / "model.keras", "keras")
    check_file(benign / "model.h5", "hdf5")
    a = keras.models.load_model(benign / "model.keras", safe_mode=True)
    b = keras.models.load_model(benign / "model.h5", safe_mode=True, compile=False)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype("float32")
    np.testing.assert_allclose(a.predict(x, verbose=0), b.predict(x, verbose=0), rtol=1e-5)


def test_trust_skips_the_check_and_is_recorded(fixtures, tmp_path):
    from packager.conversion import convert

    package = convert(fixtures["ridge"].model, to="onnx", trust=True, out=tmp_path / "p")
    assert package.manifest.trusted_source is True


def test_validate_checks_the_artifact_as_well_as_the_source(corpus, tmp_path):
    """`validate ARTIFACT --source S` loaded the artifact with no check (only the source was checked)."""
    import numpy as np

    from packager.inspection import validate

    attacks, marker, benign = corpus
    by_name = {a.name: a.path for a in attacks}
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32))
    with pytest.raises(UnsafeModelError, match=r"data\.pkl imports os\.system"):
        validate(by_name["torchscript_evil_data_pkl.pt"], benign / "script.pt", sample=tmp_path / "x.npy")
    assert not marker.exists()


def test_a_manifest_cannot_point_outside_its_package(tmp_path):
    import json

    from packager.inspection import validate
    from packager.package import Manifest

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "manifest.json").write_text(json.dumps({"model_file": "../../../etc/passwd"}))
    with pytest.raises(InputFileError, match="not a plain name inside the package"):
        validate(tmp_path / "pkg", tmp_path / "whatever.pkl")
    with pytest.raises(InputFileError, match="not a plain name inside the package"):
        Manifest.from_dict({"model_file": "/etc/passwd"})


def test_an_onnx_package_reading_an_external_file_is_refused_by_predict(corpus, tmp_path, fixtures):
    """An ONNX artifact whose weights come from a file it names (here a secret beside it) is refused before
    onnxruntime opens it, by predict as by validate: its outputs would carry the file's bytes."""
    import json
    import shutil

    import numpy as np

    from packager.conversion import convert
    from packager.inference import load_predictor, resolve

    attacks, _, _ = corpus
    evil = next(a.path for a in attacks if a.name == "external_absolute.onnx")
    package = convert(fixtures["ridge"].model, to="onnx", out=tmp_path / "pkg")
    shutil.copy(evil, package.path / "model.onnx")
    with pytest.raises(UnsafeModelError, match="read from the external file"):
        load_predictor(resolve(package.path))
    np.save(tmp_path / "x.npy", np.ones((2, 4), dtype=np.float32))
    assert json.loads((package.path / "manifest.json").read_text())["format"] == "onnx"


# ------------------------------------------------------------ the cluster engines, with hostile files inside packages

CLUSTER_SAMPLE = {  # one per technique group of the scanners' suites (tests/attacks/families/scanner_suites.py)
    "dask": ("gadget_cProfile_run.pkl", "nested_pickle_loads_binbytes.pkl"),  # ~20 s a call: a local cluster of 2 workers
    "spark": ("gadget_pty_spawn.pkl",),  # one call: each starts a JVM (~15 s)
}


@pytest.fixture(scope="module")
def hostile_packages(corpus, tmp_path_factory):
    """The cluster engines refuse bare untrusted files (distributed.refuse_unconfined); an attacker hands over a package
    instead: a folder as `convert --to pickle` writes it, its model file replaced by a corpus pickle and its digests
    recomputed so that only the safety checks stand in the way."""
    import json
    import pickle

    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from packager.conversion import convert
    from packager.package import digest_files

    attacks, marker, _ = corpus
    by_name = {a.name: a.path for a in attacks}
    root = tmp_path_factory.mktemp("hostile-packages")
    X, y = load_iris(return_X_y=True)
    (root / "iris.pkl").write_bytes(pickle.dumps(LogisticRegression(max_iter=500).fit(X, y)))
    np.save(root / "rows.npy", X[:40].astype(np.float32))
    pd.DataFrame(X[:40].astype(np.float32), columns=[f"x{i}" for i in range(4)]).to_parquet(root / "rows.parquet")
    benign = convert(root / "iris.pkl", to="pickle", out=root / "benign", sample=root / "rows.npy").path
    packages = {}
    for name in CLUSTER_SAMPLE["dask"] + CLUSTER_SAMPLE["spark"]:
        folder = root / name.removesuffix(".pkl")
        shutil.copytree(benign, folder)
        manifest = json.loads((folder / "manifest.json").read_text())
        shutil.copy(by_name[name], folder / manifest["model_file"])
        (folder / "manifest.json").unlink()
        manifest["files"] = digest_files(folder)
        (folder / "manifest.json").write_text(json.dumps(manifest))
        packages[name] = folder
    return packages, root / "rows.parquet", marker


@pytest.fixture(scope="module")
def cluster_runs(hostile_packages, tmp_path_factory):
    """engine -> [(attack name, CompletedProcess, output path)]: each CLI call once (a Spark call starts a JVM)."""
    from tests.conftest import run_cli

    packages, rows, _ = hostile_packages
    out = tmp_path_factory.mktemp("cluster-out")
    runs: dict[str, list] = {}

    def run(engine: str) -> list:
        if engine not in runs:
            runs[engine] = [(name, run_cli("predict", str(packages[name]), str(rows), "-o", str(out / name), "--engine", engine),
                             out / name) for name in CLUSTER_SAMPLE[engine]]
        return runs[engine]

    return run


@pytest.mark.parametrize("engine", ["dask", "spark"])
def test_cluster_engines_refuse_hostile_packages(cluster_runs, hostile_packages, engine):
    """As a user runs it: `packager predict PACKAGE rows.parquet --engine dask|spark` on packages holding hostile pickles
    fails naming the refused import, writes nothing, and no payload runs (the workers' static checks refuse it)."""
    if engine == "spark":
        pytest.importorskip("pyspark")
    _, _, marker = hostile_packages
    for name, result, out in cluster_runs(engine):
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode != 0, (name, result.stderr[-2000:])
        assert "model.pkl imports " in last and "not on the allow-list" in last, (name, last)
        assert not out.exists() and not marker.exists(), name


@pytest.mark.parametrize(
    "engine",
    [
        "dask",
        "spark",
    ],
)
def test_cluster_engine_refusals_exit_5_as_unsafe(cluster_runs, engine):
    """The documented exit code of an unsafe model (5, UnsafeModelError) and its hint, not a row error's."""
    if engine == "spark":
        pytest.importorskip("pyspark")
    for name, result, _ in cluster_runs(engine):
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 5 and last.startswith("error: UnsafeModelError: "), (name, result.returncode, last)
        assert "rerun with --trust" in last and "--engine local" not in last, (name, last)
