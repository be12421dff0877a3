"""``convert --to all`` skips the targets whose converter declares it takes other models only (``@converts(applies=...)``):
a LogisticRegression printed five several-line refusals (lightgbm, lleaves, treelite, xgboost-json, xgboost-ubj), now one
summary line names them. A refusal that says something about this model (Core ML's scikit-learn version limit) stays a
row, and asking for a skipped target by name still gets the converter's own reason. The ``--to all`` run itself is
checked in tests/test_cli.py (test_to_all_exits_0_...: a Ridge, the same five skipped), not run twice."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from tests.conftest import invoke_cli

SKIPPED = ["lightgbm", "lleaves", "treelite", "xgboost-json", "xgboost-ubj"]


@pytest.fixture(scope="module")
def logistic(tmp_path_factory):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path_factory.mktemp("to_all")
    X, y = load_iris(return_X_y=True)
    (folder / "model.pkl").write_bytes(pickle.dumps(LogisticRegression(max_iter=500).fit(X, y)))
    np.save(folder / "rows.npy", X[::3].astype(np.float32))
    return folder


def test_a_skipped_target_asked_for_by_name_still_answers_with_the_converters_reason(logistic, tmp_path):
    result = invoke_cli("convert", logistic / "model.pkl", "--to", "treelite", "-o", tmp_path / "t")
    assert result.returncode == 6
    assert "treelite here compiles RandomForest/ExtraTrees, LightGBM and XGBoost models, not LogisticRegression" in result.stderr
    assert not (tmp_path / "t").exists()


def test_the_declared_models_are_the_ones_the_converters_take():
    """The predicates against real estimators: a forest and the boosters are taken, a linear model is not, and a
    pipeline ending in a booster is taken (its converter's refusal about the steps before it is worth reading)."""
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from packager.plugins import default_registry

    edges = default_registry().conversions
    takes = {t: edges[("sklearn", t)].applies for t in SKIPPED}
    assert all(takes.values()) and all(edges[("sklearn", t)].applies_to for t in SKIPPED)
    models = {
        "forest": RandomForestRegressor(n_estimators=2),
        "lgbm": lgb.LGBMClassifier(),
        "xgb": xgb.XGBRegressor(),
        "linear": LogisticRegression(),
        "xgb pipeline": make_pipeline(StandardScaler(), xgb.XGBClassifier()),
    }
    verdicts = {t: sorted(name for name, model in models.items() if takes[t](model)) for t in SKIPPED}  # type: ignore[misc]
    from packager.deps import NOT_INSTALLED, version_of

    onedal = edges[("sklearn", "onedal")].applies  # oneDAL where its extra is installed; never LightGBM (float64 splits)
    installed = version_of("scikit-learn-intelex") != NOT_INSTALLED
    assert sorted(n for n, m in models.items() if onedal(m)) == (["forest", "xgb", "xgb pipeline"] if installed else [])
    assert verdicts == {
        "lightgbm": ["lgbm"],
        "lleaves": ["lgbm"],
        "treelite": ["forest", "lgbm", "xgb", "xgb pipeline"],
        "xgboost-json": ["xgb", "xgb pipeline"],
        "xgboost-ubj": ["xgb", "xgb pipeline"],
    }
