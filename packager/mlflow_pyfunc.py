"""MLflow's ``loader_module`` for every package (``python_function`` flavor of the MLmodel ``packager.mlflow_package``
writes): ``mlflow.pyfunc.load_model(PACKAGE)`` calls ``_load_pyfunc``, which runs the package in its own runtime. A
module of its own because it imports the pipeline, which the package writer must not (a cycle through ``confined``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class PackagePyfunc:
    """What ``mlflow.pyfunc.load_model(PACKAGE)`` returns underneath: the package loaded by its runtime, fed as
    ``packager predict`` feeds a table (columns matched to the signature by name) or an array."""

    def __init__(self, folder: Path):
        from packager.inference import load_predictor, resolve

        self.predictor = load_predictor(resolve(folder))  # the static checks run: the package is a file like any other

    def predict(self, model_input: Any, params: Any = None) -> Any:
        import numpy as np
        import pandas as pd

        from packager.batches import DataSource, output_columns, plan_feeds

        signature = self.predictor.signature
        where = Path("mlflow-input")
        if isinstance(model_input, pd.DataFrame):
            import pyarrow as pa

            batch = pa.RecordBatch.from_pandas(model_input, preserve_index=False)
            source = DataSource(where.with_suffix(".parquet"), "parquet", tuple(map(str, model_input.columns)), rows=len(model_input))
        elif isinstance(model_input, dict):
            batch = {k: np.asarray(v) for k, v in model_input.items()}
            source = DataSource(where.with_suffix(".npz"), "npz", tuple(batch), rows=len(next(iter(batch.values()))))
        else:
            batch = np.asarray(model_input)
            source = DataSource(where.with_suffix(".npy"), "npy", shape=batch.shape, rows=len(batch))
        plan = plan_feeds(signature, source, notes=False, full_precision=self.predictor.is_source)
        produced = self.predictor(plan.feeds(batch))
        return pd.DataFrame(output_columns(dict(produced)))


def _load_pyfunc(path: str) -> PackagePyfunc:
    """MLflow's entry point (``loader_module`` in the package's MLmodel)."""
    return PackagePyfunc(Path(path))
