"""Compiled tree ensembles: LightGBM through ``lleaves`` (LLVM) and forests through ``treelite`` + ``tl2cgen`` (C, gcc).

Why a runtime of its own: a tree ensemble walked by a generic interpreter (the library's predict, ONNX Runtime's
TreeEnsemble) spends its time on branches and memory indirection; compiled to straight-line code per tree it runs
several times faster at large batches (the issue's anchors, 1 thread: LightGBM 500 trees 12.4x native with lleaves,
RandomForest 200 trees 1.94x with treelite at 16,384 rows).

Measured here (benchmarks/results/optimize.md): lleaves runs LightGBM 500 trees at ~5x native at 16,384 rows, exactly
as fast as lleaves called directly; treelite's compiled forests win only while the forest's code fits in cache.

A package holds data, never native code. ``lleaves`` packages hold the LightGBM text model; ``treelite`` packages hold
the LightGBM text model, the XGBoost JSON model, or (scikit-learn forests) the trees' arrays in an ``.npz`` written
without pickles. The runtime compiles at load time into a cache keyed by the model file's digest and the compiler's
version (``$PACKAGER_HOME/cache/compiled/<digest>``), so a pulled package never brings a shared library with it: the
library loaded is always one this machine built from checked data, by the process that checked it: a sandboxed child
gets what its parent built read-only (``shared_with_child``) and builds anything else in its private home. Any other
file in a package is ignored by the runtime (it opens only the cache path it computed).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping

from packager.contract import Artifact, Format, Runtime
from packager.deps import require, version_of
from packager.errors import InputFileError, UnsupportedConversion, converting
from packager.plugins import adapts, converts, runs
from packager.validation import FLOAT32, criteria_table

from ._forest_arrays import forest_arrays, read_forest, treelite_forest, worth_building
from ._sklearn_api import holds

LLEAVES = "lleaves"
TREELITE = "treelite"
ONEDAL = "onedal"
NPZ_MAGIC = b"PK\x03\x04"
# Compiled code computes what the library computes, in float64 (lleaves use_fp64) or in the model's own threshold type
# (treelite), but sums trees in another order: judged as float32 artifacts are, not as the same kernels.
COMPILED_CRITERIA = criteria_table({None: FLOAT32})


def cache_root() -> Path:
    """Where compiled libraries live: under the packager home, never inside a package."""
    from packager import settings

    return settings.home() / "cache" / "compiled"


def _digest(path: Path, compiler: str) -> str:
    sha = hashlib.sha256()
    sha.update(f"{compiler}\0".encode())
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()


def compiled_path(path: Path, compiler: str, name: str) -> Path:
    """The cache file for ``path`` compiled by ``compiler`` (its name, version and options): keyed by content, so a
    changed model never reuses a stale library and two packages holding one model share one compilation.

    Who writes here: only a process that compiled the library itself from the file it checked. A sandboxed child sees
    its own private cache (under its private home), plus, read-only, the one folder its parent built for it
    (``Runtime.shared_with_child``, bound by ``sandbox.Workspace.share``): what a child writes is never loaded by
    another process."""
    folder = cache_root() / _digest(Path(path), compiler)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder / name


def _build_once(target: Path, build: Any) -> None:
    """``build(staging)`` then a rename: a library is whole or absent (a half-written one, from a process killed or a
    concurrent build, is never loaded)."""
    if target.is_file():
        return
    staging = target.with_name(f".{target.stem}-{os.getpid()}{target.suffix}")
    try:
        build(staging)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)


# ---------------------------------------------------------------- what a file holds


def _kind(path: Path) -> str:
    """ "lightgbm", "xgboost-json" or "forest-npz", by content (the extension is not trusted)."""
    from .lightgbm import is_text_model
    from .xgboost import is_json_model

    with open(path, "rb") as fh:
        head = fh.read(4096)
    if is_text_model(path, head):
        return "lightgbm"
    if head.startswith(NPZ_MAGIC):
        return "forest-npz"
    if is_json_model(path, head):
        return "xgboost-json"
    raise InputFileError(
        f"{Path(path).name} is neither a LightGBM text model, an XGBoost JSON model nor a forest .npz",
        "re-create the package with `packager convert --to treelite`",
    )


def check_treelite_file(path: Path) -> None:
    """The check of the format the content has: LightGBM text and XGBoost JSON are checked tree by tree by their own
    plugins; a forest .npz is read without pickles and every index checked before treelite's C++ sees it."""
    from .lightgbm import check_text_model
    from .xgboost import check_json_model

    kind = _kind(path)
    if kind == "lightgbm":
        check_text_model(path)
    elif kind == "xgboost-json":
        check_json_model(path)
    else:
        read_forest(path)


def check_lleaves_file(path: Path) -> None:
    from .lightgbm import check_text_model

    if _kind(path) != "lightgbm":
        raise InputFileError(f"{Path(path).name} is not a LightGBM text model", "an lleaves package holds the LightGBM text model")
    check_text_model(path)


def _is_never(path: Path, head: bytes) -> bool:
    return False  # detected by the manifest only: the content is another format's (LightGBM text, XGBoost JSON)


LLEAVES_FORMAT = Format(
    LLEAVES,
    title="LightGBM text model, compiled by lleaves at load",
    suffix=".txt",
    detect=_is_never,
    check=check_lleaves_file,
)
TREELITE_FORMAT = Format(
    TREELITE,
    title="tree ensemble compiled by treelite + tl2cgen at load",
    suffix=".npz",
    detect=_is_never,
    check=check_treelite_file,
)
# the same files as a treelite package; oneDAL builds its model from them in memory at load (converters._onedal)
ONEDAL_FORMAT = Format(
    ONEDAL, title="tree ensemble run by oneDAL (daal4py), built at load", suffix=".npz", detect=_is_never, check=check_treelite_file
)


# ---------------------------------------------------------------- scikit-learn forests as arrays


def is_tree_ensemble(model: Any) -> bool:
    """What ``sklearn_to_treelite`` takes: a RandomForest/ExtraTrees, or a LightGBM/XGBoost estimator (or a pipeline
    ending in one); ``--to all`` skips treelite for anything else."""
    forests = ("RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor")
    forest = type(model).__module__.startswith("sklearn.ensemble") and type(model).__name__ in forests
    # a multi-output forest: the forest arrays hold one output (it failed at validation as an unreadable package, exit 4)
    return (forest and getattr(model, "n_outputs_", 1) == 1) or holds("lightgbm", "xgboost")(model)


# ---------------------------------------------------------------- conversions


def _booster_file(model: Any, out: Path, what: str) -> tuple[Path, str]:
    """A LightGBM or XGBoost estimator's own model file, for a compiler to read; its classes must be 0..k-1 (the files
    store no labels)."""
    import numpy as np

    from ._sklearn_api import boosted_estimator

    estimator = boosted_estimator(model, ("lightgbm", "xgboost"), what)
    classes = getattr(estimator, "classes_", None)
    if classes is not None and not np.array_equal(np.asarray(classes), np.arange(len(classes))):
        raise UnsupportedConversion(f"{what} stores no class labels, and this model's are {list(classes)[:5]}", "use --to onnx")
    if type(estimator).__module__.split(".")[0] == "lightgbm":
        path = out / "model.txt"
        with converting("LightGBM save_model failed", "re-fit the model"):
            estimator.booster_.save_model(str(path))
        return path, "lightgbm"
    if getattr(estimator, "objective", "") and "multi:softmax" in str(estimator.objective):
        raise UnsupportedConversion("treelite gives scores, XGBoost multi:softmax gives labels only", "use --to onnx or xgboost-json")
    path = out / "model.json"
    with converting("XGBoost save_model failed", "re-fit the model"):
        estimator.save_model(str(path))
    return path, "xgboost"


@converts(
    "sklearn",
    to=LLEAVES,
    note="LGBMClassifier/LGBMRegressor: LightGBM's text model, LLVM-compiled at load (cached by digest)",
    applies=holds("lightgbm"),
    applies_to="LightGBM estimators",
)
def sklearn_to_lleaves(model: Any, signature: Any, out: Path, options: Any) -> Artifact:
    path, library = _booster_file(model, out, "an lleaves package")
    if library != "lightgbm":
        raise UnsupportedConversion("lleaves compiles LightGBM models only", "use --to treelite for XGBoost")
    return Artifact(path, {"converter": "LightGBM save_model (compiled by lleaves at load)", "lleaves": version_of("lleaves")})


@converts(
    "sklearn",
    to=TREELITE,
    note="RandomForest/ExtraTrees (arrays), LightGBM, XGBoost: compiled by tl2cgen at load",
    applies=is_tree_ensemble,
    applies_to="tree ensembles (single-output RandomForest/ExtraTrees, LightGBM, XGBoost)",
    options={"search_seconds": "set by optimize: seconds left (or none); refuse what cannot build in time or cannot win"},
)
def sklearn_to_treelite(model: Any, signature: Any, out: Path, options: Any) -> Artifact:
    import numpy as np

    worth_building(model, options.option("search_seconds"))
    details = {"converter": "packager forest arrays / library save_model (compiled by tl2cgen at load)", "treelite": version_of("treelite")}
    top = type(model).__module__.split(".")[0]
    if top in ("lightgbm", "xgboost") or (
        getattr(model, "steps", None) and type(model.steps[-1][1]).__module__.split(".")[0] in ("lightgbm", "xgboost")
    ):
        path, _ = _booster_file(model, out, "a treelite package")
        return Artifact(path, details)
    path = out / "forest.npz"
    np.savez(path, **forest_arrays(model))
    return Artifact(path, details)


def _onedal_applies(model: Any) -> bool:
    """A tree ensemble, where oneDAL is installed (the onedal extra): ``--to all`` skips it elsewhere, as it skips
    other models; ``--to onedal`` names the missing package."""
    from packager.deps import NOT_INSTALLED

    return is_tree_ensemble(model) and not holds("lightgbm")(model) and version_of(DAL) != NOT_INSTALLED


@converts(
    "sklearn",
    to=ONEDAL,
    note="RandomForest/ExtraTrees (arrays), XGBoost: run by oneDAL, its model built at load",
    applies=_onedal_applies,
    applies_to="single-output RandomForest/ExtraTrees and XGBoost models, where scikit-learn-intelex is installed",
)
def sklearn_to_onedal(model: Any, signature: Any, out: Path, options: Any) -> Artifact:
    """The treelite package's data; the oneDAL model is built once here so what oneDAL refuses (a LightGBM categorical
    or linear tree) fails the conversion, not a later load."""
    if not is_tree_ensemble(model):
        raise UnsupportedConversion(
            f"onedal runs single-output RandomForest/ExtraTrees and XGBoost models, not this {type(model).__name__}", "use --to onnx"
        )
    if holds("lightgbm")(model):
        raise UnsupportedConversion(LIGHTGBM_FLOAT32, "use --to lleaves (5-7x native here) or treelite")
    require("daal4py", "onedal", "the onedal tree-ensemble runtime")  # before anything is written
    artifact = sklearn_to_treelite(model, signature, out, options)
    with converting("oneDAL could not build this model", "use --to onnx or treelite"):
        OnedalRuntime().load(artifact.path)
    return Artifact(artifact.path, {"converter": "packager forest arrays / library save_model (run by oneDAL)", "daal4py": version_of(DAL)})


# LightGBM and XGBoost files load into their scikit-learn estimators: the scikit-learn edges above compile them (three
# one-line wrapper converters before)
@adapts(
    "lightgbm",
    to="sklearn",
    targets={
        LLEAVES: "LLVM-compiled at load (cached by digest)",
        TREELITE: "compiled by tl2cgen at load (cached by digest)",
    },
)
def lightgbm_for_compilers(model: Any) -> Any:
    return model


@adapts(
    "xgboost", to="sklearn", targets={TREELITE: "compiled by tl2cgen at load (cached by digest)", ONEDAL: "run by oneDAL (built at load)"}
)
def xgboost_for_compilers(model: Any) -> Any:
    return model


# ---------------------------------------------------------------- runtimes


def _outputs(signature: Any, scores: Any, classes: Any = None) -> dict[str, Any]:
    """The signature's outputs from compiled scores: a regressor's values; a classifier's probabilities (a binary model's
    one column completed to two) and labels (the best class)."""
    import numpy as np

    names = [o.name for o in signature.outputs]
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores.reshape(scores.shape[0], -1)
    specs = {o.name: o for o in signature.outputs}
    if "probabilities" not in specs and "label" not in specs:
        spec = signature.outputs[0]
        values = scores[:, 0] if len(spec.shape or ()) <= 1 else scores
        return {spec.name: values.astype(spec.dtype or "float64")}
    probabilities = np.column_stack([1 - scores[:, 0], scores[:, 0]]) if scores.shape[1] == 1 else scores
    labels = np.argmax(probabilities, axis=1)
    result: dict[str, Any] = {}
    for name in names:
        spec = specs[name]
        if name == "label":
            chosen = labels if classes is None or len(classes) == 0 else np.asarray(classes)[labels]
            result[name] = chosen.astype(spec.dtype or "int64")
        elif name == "probabilities":
            result[name] = probabilities.astype(spec.dtype or "float64")
    return result


class _PassManagerBuilder:
    """lleaves 1.3's optimizer setup, on llvmlite's new pass manager: llvmlite 0.45+ removed ``PassManagerBuilder``
    (measured with llvmlite 0.50: ``AttributeError: module 'llvmlite.binding' has no attribute 'PassManagerBuilder'``,
    so no model compiled). Same opt level 3; inlining is on at that level."""

    opt_level = 3
    inlining_threshold = 0

    def populate(self, manager: Any) -> None:
        manager.opt_level = self.opt_level


class _ModulePassManager:
    opt_level = 3

    def run(self, module: Any) -> None:
        import llvmlite.binding as llvm  # type: ignore[import-untyped]

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        machine = llvm.Target.from_triple(llvm.get_process_triple()).create_target_machine(
            cpu=llvm.get_host_cpu_name(), reloc="pic", codemodel="large"
        )
        options = llvm.create_pipeline_tuning_options(speed_level=self.opt_level)
        builder = llvm.create_pass_builder(machine, options)
        builder.getModulePassManager().run(module, builder)


def _new_pass_manager_for_lleaves() -> None:
    """Give lleaves' tree compiler the legacy names it calls, where this llvmlite no longer has them (only there)."""
    import types

    import llvmlite.binding as llvm
    from lleaves import llvm_binding  # type: ignore[import-untyped]
    from lleaves.compiler import tree_compiler  # type: ignore[import-untyped]

    if hasattr(llvm, "PassManagerBuilder") or isinstance(tree_compiler.llvm, types.SimpleNamespace):
        return
    shim = types.SimpleNamespace(**{k: getattr(llvm, k) for k in dir(llvm) if not k.startswith("__")})
    shim.PassManagerBuilder, shim.ModulePassManager = _PassManagerBuilder, _ModulePassManager
    shim.initialize = lambda: None  # 0.50 raises "initialize() is deprecated": initialization is automatic there
    tree_compiler.llvm = llvm_binding.llvm = shim


@runs(LLEAVES_FORMAT, criteria=COMPILED_CRITERIA)
class LleavesRuntime(Runtime):
    """LightGBM compiled by lleaves (LLVM) at load; the object file cached by the model's digest."""

    name, distribution = "lleaves", "lleaves"
    thread_control = "session"
    takes_source_input = True  # the compiled model reads float64, as LightGBM does

    def _compiled(self, path: Path) -> tuple[Any, Path]:
        """The compiled model, and its cache file: loaded when present, else compiled into a staging file renamed into
        place (lleaves writes its cache in place, unchecked: a half-written object file would be loaded next time)."""
        check_lleaves_file(Path(path))
        lleaves = require("lleaves", "trees", "compiled LightGBM models")
        _new_pass_manager_for_lleaves()
        model = lleaves.Model(model_file=str(path))
        key = f"lleaves {version_of('lleaves')} llvmlite {version_of('llvmlite')}"
        cache = compiled_path(Path(path), key, "model.o")
        with converting("lleaves could not compile the model", "use the lightgbm or onnx package of this model"):
            if cache.is_file():
                model.compile(cache=str(cache))
            else:
                _build_once(cache, lambda staging: model.compile(cache=str(staging)))
        return model, cache

    def load(self, path: Path, *, trust: bool = False, threads: int | None = None) -> Any:
        model, _ = self._compiled(Path(path))
        return model, threads or 1

    def shared_with_child(self, path: Path) -> list[Path]:
        return [self._compiled(Path(path))[1].parent]

    def predict(self, handle: Any, signature: Any, feeds: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np

        model, threads = handle
        x = np.asarray(next(iter(feeds.values())), dtype=np.float64)
        return _outputs(signature, model.predict(x, n_jobs=threads))


# How tl2cgen builds (benchmarks/optimize.py --treelite-options, results/optimize_treelite_options_20.json; 2-core
# machine, load 10-19, 1 thread, 16,384 rows). One translation unit per tree (up to 200): with 2 units (one per core,
# as before) gcc -O3 on RandomForest 200 trees of depth 12 (293,492 nodes) had not finished after 35 min; one per tree,
# -O1 built them in 657 s at load 19. -O1 rather than tl2cgen's -O3: the same speed in half the build. RandomForest 20
# trees of depth 12 (28,672 nodes), each against scikit-learn's predict_proba in the same interleaved rounds, two runs:
# -O1 60 / 77 s, 1.11x / 1.01x; -O2 90 / 120 s, 1.10x / 1.13x; -O3 140 / 102 s, 1.15x / 0.89x; -O2 + quantize
# 46 / 89 s, 0.61x / 0.64x; -O2 + annotate_branch (2,048 training rows) 40 / 117 s, 0.90x / 1.03x. Not measured on
# the shallower LightGBM/XGBoost trees. The 200-tree library (9.6 MB of code, each row through every tree) ran at
# 0.24x: compiled if-else code beats a tree walker only while the forest's code stays in cache.
TL2CGEN_PARAMS = {"parallel_comp": 200}
TL2CGEN_OPTIONS = ["-O1"]


@runs(TREELITE_FORMAT, criteria=COMPILED_CRITERIA)
class TreeliteRuntime(Runtime):
    """A forest (scikit-learn arrays, LightGBM text, XGBoost JSON) compiled to C by tl2cgen and gcc at load; the shared
    library cached by the model's digest, never read from the package."""

    name, distribution = "treelite", "treelite"
    thread_control = "session"
    takes_source_input = True

    def versions(self) -> dict[str, str]:
        return {"treelite": version_of("treelite"), "tl2cgen": version_of("tl2cgen")}

    def requirements(self) -> list[str]:
        from packager.deps import requirement

        return [requirement("treelite"), requirement("tl2cgen")]

    def _library(self, path: Path) -> tuple[Path, Any]:
        """The compiled library (built when absent) and the forest's class labels (None for LightGBM/XGBoost files)."""
        kind = _kind(path)
        check_treelite_file(path)
        classes = read_forest(path)["classes"] if kind == "forest-npz" else None
        key = f"tl2cgen {version_of('tl2cgen')} treelite {version_of('treelite')} {sorted(TL2CGEN_PARAMS.items())} {TL2CGEN_OPTIONS}"
        library = compiled_path(path, key, "model.so")
        if library.is_file():
            return library, classes
        treelite = require("treelite", "trees", "compiled tree ensembles")
        tl2cgen = require("tl2cgen", "trees", "compiled tree ensembles")
        with converting("treelite could not read the model", "use the onnx package of this model"):
            if kind == "lightgbm":
                model = treelite.frontend.load_lightgbm_model(str(path))
            elif kind == "xgboost-json":
                model = treelite.frontend.load_xgboost_model(str(path), format_choice="json")
            else:
                model = treelite_forest(read_forest(path))

        def build(staging: Path) -> None:
            from packager.logs import TREELITE_VERSION_NOTICE, native_stderr_without

            # tl2cgen 1.0's bundled treelite 4.1.2 prints a version notice reading a treelite 4.8 model, to fd 2 on every
            # build: harmless (a compiled LightGBM model: max |diff| 0.0 against LightGBM and treelite's own gtil)
            with (
                native_stderr_without(TREELITE_VERSION_NOTICE),
                converting("tl2cgen could not compile the model", "check that gcc is installed, or use the onnx package"),
            ):
                tl2cgen.export_lib(
                    model, toolchain="gcc", libpath=str(staging), params=dict(TL2CGEN_PARAMS), options=list(TL2CGEN_OPTIONS), verbose=False
                )

        _build_once(library, build)
        return library, classes

    def load(self, path: Path, *, trust: bool = False, threads: int | None = None) -> Any:
        library, classes = self._library(Path(path))
        tl2cgen = require("tl2cgen", "trees", "compiled tree ensembles")
        predictor = tl2cgen.Predictor(str(library), nthread=threads or 1, verbose=False)
        return predictor, classes, tl2cgen, _kind(Path(path)) != "lightgbm"

    def shared_with_child(self, path: Path) -> list[Path]:
        return [self._library(Path(path))[0].parent]

    def predict(self, handle: Any, signature: Any, feeds: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np

        predictor, classes, tl2cgen, float32_rows = handle
        x = np.asarray(next(iter(feeds.values())))
        if float32_rows:
            # scikit-learn and XGBoost compare float32 rows (with float64 / float32 thresholds): a float64 row between
            # float32(x) and the threshold went the other way here (a diabetes forest: 4.66 off on 22 of 442 rows,
            # found by an outside user after validation had fed float32 and passed); LightGBM compares float64 rows
            x = np.asarray(x, dtype=np.float32)
        dtype = np.float32 if predictor.threshold_type == "float32" else np.float64
        scores = predictor.predict(tl2cgen.DMatrix(np.ascontiguousarray(x, dtype=dtype)))
        return _outputs(signature, np.asarray(scores).reshape(x.shape[0], -1), classes)


# oneDAL compares float32 rows with float32 thresholds: LightGBM's double thresholds (native predict compares in
# float64) sent breast_cancer rows near a split the other way (max diff 0.021 in probability, 1.47 in a regression):
# refused; XGBoost's thresholds are float32 with "<" and scikit-learn's are rounded down to float32 (converters._onedal)
LIGHTGBM_FLOAT32 = "onedal compares in float32 and LightGBM's thresholds are float64: rows near a split would go the other way"
DAL = "scikit-learn-intelex"  # the distribution that ships daal4py (and, through its dependency daal, oneDAL)


@runs(ONEDAL_FORMAT, criteria=COMPILED_CRITERIA)
class OnedalRuntime(Runtime):
    """A forest, LightGBM or XGBoost model run by oneDAL's tree predictor (converters._onedal: why, and the figures)."""

    name, distribution = "onedal", DAL
    thread_control = "process"  # daalinit sets oneDAL's process-wide thread count
    takes_source_input = True

    def load(self, path: Path, *, trust: bool = False, threads: int | None = None) -> Any:
        from ._onedal import booster_model, forest_models, set_threads

        kind = _kind(Path(path))
        if kind == "lightgbm":
            raise UnsupportedConversion(LIGHTGBM_FLOAT32, "use the lleaves or treelite package of this model")
        check_treelite_file(Path(path))
        set_threads(threads)
        with converting("oneDAL could not build the model", "use the onnx or treelite package of this model"):
            if kind == "forest-npz":
                data = read_forest(Path(path))
                return forest_models(data), data["classes"]
            return booster_model(Path(path)), None

    def predict(self, handle: Any, signature: Any, feeds: Mapping[str, Any]) -> dict[str, Any]:
        from ._onedal import scores

        models, classes = handle
        return _outputs(signature, scores(models, next(iter(feeds.values()))), classes)
