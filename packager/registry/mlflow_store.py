"""MLflow's model registry as a packager registry: ``PACKAGER_REGISTRY=mlflow:<tracking-uri>`` (``mlflow:sqlite:///m.db``,
``mlflow:http://127.0.0.1:5000``).

A push is one MLflow run (experiment ``packager-registry``) whose artifacts are the package (``package/``), its lineage
files (``lineage/``) and ``packager/record.json`` (file digests, lineage, manifest, parents: what MLflow has no field
for), and one registered-model version whose source is that run's ``package/`` folder. Packager's facts a team filters
on in MLflow's own UI are version tags: ``packager.digest``, ``packager.format``, ``packager.quantization``,
``packager.validation``, ``packager.id``, ``packager.parents``, plus the user's tags; params and metrics are the run's;
aliases are MLflow's aliases. Version numbers are MLflow's (1, 2, ... per model), as packager's are.

What MLflow cannot give, said rather than faked: blobs are not content-addressed (two pushes of one package store it
twice; ``gc`` has nothing to free, MLflow owns the artifacts), and ``search`` evaluates packager's query language over
the versions in Python (MLflow's filter grammar has no OR), which reads every version: fine for a team's registry of
thousands, not for the 100,000-version catalog the SQL backend is measured on.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping

from packager.errors import BlobCorrupt, NotFound, UsageError
from packager.registry.backend import Files, RegistryBackend, checked_values, safe_join
from packager.registry.refs import ModelRef, check_alias, check_name
from packager.registry.versions import FileEntry, VersionInfo, package_digest

EXPERIMENT = "packager-registry"
RECORD = "packager/record.json"
PREFIX = "packager."
INTERNAL = frozenset(
    {"packager.id", "packager.digest", "packager.format", "packager.quantization", "packager.validation", "packager.parents"}
)
_NONE = ""  # MLflow tags are strings: no quantization is the empty string


class MlflowRegistry(RegistryBackend):
    """A packager registry inside an MLflow tracking server or store (see the module docstring)."""

    def __init__(self, url: str, blobs: str | None = None, **options: Any):
        from packager.deps import require

        require("mlflow", "mlflow", "the mlflow: registry backend")
        from mlflow import MlflowClient

        self.url = url
        self.tracking_uri = url.split(":", 1)[1]
        if not self.tracking_uri:
            raise UsageError(f"{url!r} names no MLflow tracking URI", "e.g. mlflow:sqlite:///mlflow.db or mlflow:http://127.0.0.1:5000")
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        self._pending = threading.local()  # the run store_files opened, which record() registers
        self._records: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ writing
    def _experiment(self) -> str:
        found = self.client.get_experiment_by_name(EXPERIMENT)
        if found is not None:
            return str(found.experiment_id)
        location = None
        if self.tracking_uri.startswith("sqlite:///"):  # artifacts beside the database, not in the current folder
            location = (Path(self.tracking_uri[len("sqlite:///") :]).resolve().parent / "mlartifacts").as_uri()
        try:
            return str(self.client.create_experiment(EXPERIMENT, artifact_location=location))
        except Exception:  # created by a concurrent push
            found = self.client.get_experiment_by_name(EXPERIMENT)
            if found is None:
                raise
            return str(found.experiment_id)

    def store_files(self, files: Files) -> list[FileEntry]:
        run_id = getattr(self._pending, "run_id", None)
        if run_id is None:
            run_id = self.client.create_run(self._experiment()).info.run_id
            self._pending.run_id = run_id
        entries = []
        with tempfile.TemporaryDirectory(prefix="packager-mlflow-push-") as work:
            for path, rel, role in files:
                folder = "package" if role == "package" else ""
                parent = str(Path(folder, rel).parent).replace("\\", "/")
                staged = Path(work) / uuid.uuid4().hex / Path(rel).name  # log_artifact keeps the file's own name
                staged.parent.mkdir()
                shutil.copyfile(path, staged)
                self.client.log_artifact(run_id, str(staged), None if parent in ("", ".") else parent)
                entries.append(FileEntry(rel, _sha256(staged), staged.stat().st_size, role))
        return entries

    def record(
        self,
        name: str,
        manifest: Mapping[str, Any],
        entries: list[FileEntry],
        lineage: Mapping[str, Any],
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        aliases: Iterable[str] = (),
        description: str | None = None,
        parents: Iterable[str] = (),
    ) -> VersionInfo:
        check_name(name)
        params, metrics, tags, aliases = checked_values(params, metrics, tags, aliases)
        run_id = getattr(self._pending, "run_id", None) or self.client.create_run(self._experiment()).info.run_id
        self._pending.run_id = None
        try:
            parent_ids = [self.get(p).id for p in parents]  # an unknown parent: nothing is registered
        except NotFound:
            self.client.delete_run(run_id)
            raise
        from packager.registry.rows import now

        version_id = str(uuid.uuid4())
        quant = manifest.get("quantization") or {}
        record = {
            "id": version_id,
            "created": now().isoformat(timespec="seconds"),
            "files": [vars(e) for e in entries],
            "lineage": dict(lineage),
            "manifest": dict(manifest),
            "parents": parent_ids,
            "description": description,
        }
        with tempfile.TemporaryDirectory() as work:
            path = Path(work) / "record.json"
            path.write_text(json.dumps(record))
            self.client.log_artifact(run_id, str(path), "packager")
        for key, value in params.items():
            self.client.log_param(run_id, key, value)
        for key, number in metrics.items():
            self.client.log_metric(run_id, key, number)
        self.client.set_terminated(run_id)
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(getattr(exc, "error_code", "")):
                raise
        version_tags = {
            "packager.id": version_id,
            "packager.digest": package_digest(entries),
            "packager.format": str(manifest.get("format", "")),
            "packager.quantization": str(quant.get("mode") or _NONE) if quant.get("applied") else _NONE,
            "packager.validation": str((manifest.get("validation") or {}).get("status") or _NONE),
            "packager.parents": ",".join(parent_ids),
            **tags,
        }
        source = f"{self.client.get_run(run_id).info.artifact_uri}/package"
        mv = self.client.create_model_version(name, source, run_id=run_id, tags=version_tags, description=description)
        for alias in aliases:
            self.client.set_registered_model_alias(name, alias, mv.version)
        return self.get(ModelRef(name, version=int(mv.version)))

    # ------------------------------------------------------------------ reading
    def _versions(self, name: str | None = None) -> builtins.list[Any]:
        from mlflow.exceptions import MlflowException

        query = f"name = '{name}'" if name else None
        try:
            found = list(self.client.search_model_versions(query, max_results=200_000))
        except MlflowException:
            return []
        return [mv for mv in found if "packager.id" in (mv.tags or {})]

    def _record(self, run_id: str) -> dict[str, Any]:
        if run_id not in self._records:
            with tempfile.TemporaryDirectory() as work:
                local = self.client.download_artifacts(run_id, RECORD, work)
                self._records[run_id] = json.loads(Path(local).read_text())
        return self._records[run_id]

    def _infos(self, versions: Iterable[Any]) -> builtins.list[VersionInfo]:
        """Many versions read at once: one alias table per model and one run search per 100 runs, where reading each
        version alone asked for both every time (benchmarks/mlflow_registry.py: a search over 24 versions made 73
        client calls, now 1 search + 3 alias tables + 1 run search + the 24 records, which are read once per process)."""
        versions = builtins.list(versions)
        tables = {name: self._alias_table(name) for name in {mv.name for mv in versions}}
        runs = self._runs({mv.run_id for mv in versions})
        return [self._info(mv, tables[mv.name], runs.get(mv.run_id)) for mv in versions]

    def _alias_table(self, name: str) -> dict[str, Any]:
        from mlflow.exceptions import MlflowException

        try:  # a searched version carries no aliases (measured, mlflow 3.17 sqlite store): the model's table has them
            return dict(self.client.get_registered_model(name).aliases or {})
        except MlflowException:
            return {}

    def _runs(self, run_ids: set[str]) -> dict[str, Any]:
        """The runs of packager's experiment among ``run_ids``, 100 per search (a run found elsewhere: ``get_run``)."""
        ids = sorted(i for i in run_ids if isinstance(i, str) and re.fullmatch(r"[0-9a-f]{32}", i))  # quoted into a filter
        found: dict[str, Any] = {}
        for start in range(0, len(ids), 100):
            chunk = ids[start : start + 100]
            listed = ", ".join(f"'{i}'" for i in chunk)
            for run in self.client.search_runs([self._experiment()], f"attributes.run_id IN ({listed})", max_results=len(chunk)):
                found[run.info.run_id] = run
        return found

    def _info(self, mv: Any, table: Mapping[str, Any] | None = None, run: Any = None) -> VersionInfo:
        tags = dict(mv.tags or {})
        record = self._record(mv.run_id)
        run = run if run is not None else self.client.get_run(mv.run_id)
        table = table if table is not None else self._alias_table(mv.name)
        aliases = tuple(sorted(a for a, v in table.items() if str(v) == str(mv.version)))
        files = tuple(FileEntry(f["path"], f["digest"], f["size"], f.get("role", "package")) for f in record["files"])
        return VersionInfo(
            id=tags["packager.id"],
            name=mv.name,
            version=int(mv.version),
            created=record["created"],
            digest=tags.get("packager.digest", ""),
            format=tags.get("packager.format", ""),
            quantization=tags.get("packager.quantization") or None,
            validation=tags.get("packager.validation") or None,
            size=sum(f.size for f in files if f.role == "package"),
            description=mv.description or None,
            aliases=aliases,
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            tags={k: v for k, v in tags.items() if k not in INTERNAL},
            files=files,
            parents=tuple(p for p in tags.get("packager.parents", "").split(",") if p),
            lineage=record.get("lineage", {}),
            manifest=record.get("manifest", {}),
        )

    def _find(self, ref: str | ModelRef) -> Any:
        """The MLflow model version of a packager reference or version id."""
        from mlflow.exceptions import MlflowException

        if isinstance(ref, str) and _is_id(ref):
            found = [mv for mv in self._versions() if mv.tags.get("packager.id") == ref]
            if not found:
                raise NotFound(f"version {ref} is not in the registry", "see `packager list`")
            return found[0]
        parsed = ref if isinstance(ref, ModelRef) else ModelRef.parse(ref)
        missing = NotFound(f"{parsed} is not in the registry", f"see `packager list {parsed.name}`")
        try:
            if parsed.version is not None:
                mv = self.client.get_model_version(parsed.name, str(parsed.version))
                if "packager.id" not in (mv.tags or {}):
                    raise missing
                return mv
            if parsed.alias:
                return self.client.get_model_version_by_alias(parsed.name, parsed.alias)
        except MlflowException:
            raise missing from None
        versions = sorted(self._versions(parsed.name), key=lambda mv: int(mv.version))
        if parsed.digest:
            versions = [mv for mv in versions if mv.tags.get("packager.digest") == parsed.digest]
        if not versions:
            raise missing
        return versions[-1]

    def get(self, ref: str | ModelRef) -> VersionInfo:
        return self._info(self._find(ref))

    def list(self, name: str | None = None, limit: int | None = None) -> builtins.list[VersionInfo]:
        if name:
            chosen = sorted(self._versions(name), key=lambda mv: -int(mv.version))
        else:
            latest: dict[str, Any] = {}
            for mv in self._versions():
                if mv.name not in latest or int(mv.version) > int(latest[mv.name].version):
                    latest[mv.name] = mv
            chosen = [latest[n] for n in sorted(latest)]
        return self._infos(chosen[:limit])

    def model_summaries(self, names: Iterable[str] | None = None) -> builtins.list[dict[str, Any]]:
        wanted = set(names) if names is not None else None
        summary: dict[str, dict[str, Any]] = {}
        for mv in self._versions():
            if wanted is not None and mv.name not in wanted:
                continue
            entry = summary.setdefault(mv.name, {"name": mv.name, "versions": 0, "formats": set()})
            entry["versions"] += 1
            entry["formats"].add(mv.tags.get("packager.format", ""))
        return [{**summary[n], "formats": sorted(summary[n]["formats"])} for n in sorted(summary)]

    def search(self, expression: str, limit: int = 100) -> builtins.list[VersionInfo]:
        from packager.registry.query import check_limit, parse

        tree = parse(expression)
        check_limit(limit)
        _check_types(tree)  # a bad literal is a usage error even when no version exists to compare with
        infos = self._infos(self._versions())
        hits = [info for info in infos if _matches(tree, info)]
        return sorted(hits, key=lambda v: (v.name, -v.version))[:limit]  # the embedded registry's order: newest first

    def pull(self, ref: str | ModelRef, out: str | Path, *, overwrite: bool = False) -> Path:
        from packager.package import staging_dir

        mv = self._find(ref)
        info = self._info(mv)
        destination = Path(out)
        with tempfile.TemporaryDirectory(prefix="packager-mlflow-pull-") as work:
            downloaded = Path(self.client.download_artifacts(mv.run_id, "package", work))
            with staging_dir(destination, overwrite) as staging:
                for entry in info.files:
                    if entry.role != "package":
                        continue
                    source, target = safe_join(downloaded, entry.path), safe_join(staging, entry.path)
                    if not source.is_file() or _sha256(source) != entry.digest:
                        raise BlobCorrupt(
                            f"{info.ref}: {entry.path}: the MLflow artifact is {'missing' if not source.is_file() else 'corrupt'}",
                            "the artifact store was changed after the push; push the package again",
                        )
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target)
        return destination.absolute()

    # ------------------------------------------------------------------ change
    def set_alias(self, ref: str | ModelRef, alias: str) -> VersionInfo:
        check_alias(alias)
        mv = self._find(ref)
        self.client.set_registered_model_alias(mv.name, alias, mv.version)
        return self.get(ModelRef(mv.name, version=int(mv.version)))

    def remove_alias(self, name: str, alias: str) -> None:
        from mlflow.exceptions import MlflowException

        check_name(name)
        try:
            self.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            raise NotFound(f"{name} has no alias {alias}", f"see `packager show {name}`") from None
        self.client.delete_registered_model_alias(name, alias)

    def tag(self, ref: str | ModelRef, tags: Mapping[str, str], remove: Iterable[str] = ()) -> VersionInfo:
        from packager.registry.checks import refuse_reserved

        _, _, tags, _ = checked_values(None, None, tags, ())
        refuse_reserved(tags)
        touched = [k for k in [*tags, *remove] if k in INTERNAL]
        if touched:
            raise UsageError(f"the tag {touched[0]} is packager's own record", "choose another key")
        mv = self._find(ref)
        for key, value in tags.items():
            self.client.set_model_version_tag(mv.name, mv.version, key, value)
        for key in remove:
            if key in (mv.tags or {}):
                self.client.delete_model_version_tag(mv.name, mv.version, key)
        return self.get(ModelRef(mv.name, version=int(mv.version)))

    def delete(self, ref: str | ModelRef) -> VersionInfo:
        mv = self._find(ref)
        info = self._info(mv)
        self.client.delete_model_version(mv.name, mv.version)
        return info

    def gc(self) -> dict[str, int]:
        """Nothing to collect here: MLflow keeps a deleted version's run and artifacts (``mlflow gc`` removes them)."""
        return {"blobs_removed": 0, "bytes_freed": 0, "temp_files_removed": 0}

    def verify(self) -> builtins.list[dict[str, Any]]:
        problems = []
        for mv in self._versions():
            info = self._info(mv)
            with tempfile.TemporaryDirectory() as work:
                try:
                    folder = Path(self.client.download_artifacts(mv.run_id, "package", work))
                except Exception as exc:  # a missing artifact folder: every file is missing
                    folder = Path(work) / "absent"
                    del exc
                for entry in info.files:
                    if entry.role != "package":
                        continue
                    path = folder / entry.path
                    problem = "missing" if not path.is_file() else ("corrupt" if _sha256(path) != entry.digest else None)
                    if problem:
                        problems.append({"ref": info.ref, "path": entry.path, "digest": entry.digest, "problem": problem})
        return problems

    def lineage(self, ref: str | ModelRef) -> dict[str, Any]:
        start = self.get(ref)
        infos = {i.id: i for i in self._infos(self._versions())}
        parent_of = {i.id: i.parents[0] for i in infos.values() if i.parents}
        root, seen = start.id, {start.id}
        while root in parent_of and parent_of[root] not in seen and parent_of[root] in infos:
            root = parent_of[root]
            seen.add(root)
        children: dict[str, builtins.list[str]] = {}
        for child, parent in parent_of.items():
            children.setdefault(parent, []).append(child)

        def tree(node: str) -> dict[str, Any]:
            info = infos[node]
            kids = sorted((tree(k) for k in children.get(node, []) if k in infos), key=lambda n: n["version"])
            return {
                "ref": info.ref,
                "version": info.version,
                "format": info.format,
                "quantization": info.quantization,
                "digest": info.digest,
                "focus": node == start.id,
                "children": kids,
            }

        return tree(root)

    def find_by_file_digest(self, name: str, digest: str) -> VersionInfo | None:
        for mv in sorted(self._versions(name), key=lambda mv: int(mv.version)):
            info = self._info(mv)
            if any(f.digest == digest and f.role == "package" for f in info.files):
                return info
        return None

    def children_of(self, version_id: str) -> builtins.list[VersionInfo]:
        infos = self._infos(self._versions())
        return sorted((i for i in infos if version_id in i.parents), key=lambda i: i.created)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_id(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _matches(node: Any, info: VersionInfo) -> bool:
    """packager's query language (``packager.registry.query``) on one version, as the SQL backend compiles it."""
    from packager.registry.query import BoolOp, _timestamp

    if isinstance(node, BoolOp):
        results = [_matches(item, info) for item in node.items]
        return all(results) if node.op == "and" else any(results) if node.op == "or" else not results[0]
    field, op, value = node.field, node.op, node.value
    if field.startswith("metric."):
        if not isinstance(value, (int, float)):
            raise UsageError(f"{field} is a number; {value!r} is not", "compare metrics with numbers")
        key = field[7:]
        return key in info.metrics and _compare(info.metrics[key], op, value)
    if field.startswith(("param.", "tag.")):
        values = info.params if field.startswith("param.") else info.tags
        key = field.split(".", 1)[1]
        if key not in values:
            return False
        numeric = op in (">", ">=", "<", "<=") and isinstance(value, (int, float))
        if numeric:
            number = _number(values[key])
            return number is not None and _compare(number, op, value)
        return _compare(values[key], op, str(value))
    if field == "alias":
        return any(_compare(a, op, str(value)) for a in info.aliases)
    if field == "version":
        if not isinstance(value, int):
            raise UsageError(f"version is a whole number; {value!r} is not", "example: version >= 3")
        return _compare(info.version, op, value)
    if field == "created":
        import datetime as dt

        return _compare(dt.datetime.fromisoformat(info.created), op, _timestamp(value))
    own = {"name": info.name, "format": info.format, "quantization": info.quantization, "validation": info.validation}
    own["description"] = info.description
    current = own.get(field)
    return current is not None and _compare(current, op, str(value))


def _check_types(node: Any) -> None:
    from packager.registry.query import BoolOp, _timestamp

    if isinstance(node, BoolOp):
        for item in node.items:
            _check_types(item)
    elif node.field.startswith("metric.") and not isinstance(node.value, (int, float)):
        raise UsageError(f"{node.field} is a number; {node.value!r} is not", "compare metrics with numbers")
    elif node.field == "version" and not isinstance(node.value, int):
        raise UsageError(f"version is a whole number; {node.value!r} is not", "example: version >= 3")
    elif node.field == "created":
        _timestamp(node.value)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _compare(left: Any, op: str, right: Any) -> bool:
    try:
        if op == "=":
            return bool(left == right)
        if op == "!=":
            return bool(left != right)
        if op == "~":
            return str(right) in str(left)
        return bool({">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[op])
    except TypeError:
        return False
    except KeyError:
        raise UsageError(f"unknown operator {op}", "use = != > >= < <= or ~") from None
