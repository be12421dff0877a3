"""scikit-learn models of the third round of real-model reports (issue 26), built as tutorials build them on the datasets
scikit-learn ships: ensembles whose members scale the same columns, HistGradientBoosting fitted with NaN and with
categorical columns, load_wine's own frame (a '/' in a column name) through a ColumnTransformer with
OneHotEncoder(handle_unknown="ignore"), and a FunctionTransformer in front of a classifier.

Each builder returns a :class:`tests.zoo.sklearn_models.Built` (fitted model, held-out rows it never saw).
"""
from __future__ import annotations

from typing import Any, Callable

from tests.zoo.sklearn_models import SEED, Built, _split


def _wine_frame(bands: int = 3) -> tuple[Any, Any]:
    """load_wine(as_frame=True) as is (its 'od280/od315_of_diluted_wines' column included) plus a text band of alcohol."""
    import pandas as pd
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True, as_frame=True)
    X = X.copy()
    X["alcohol_band"] = pd.cut(X["alcohol"], bands, labels=["low", "mid", "high", "top"][:bands]).astype(str)
    return X, y


def wine_slash_column_transformer() -> Built:
    """The ColumnTransformer tutorial on wine's own frame: numbers scaled, a text column one-hot encoded with
    handle_unknown="ignore", then LogisticRegression."""
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, y = _wine_frame()
    numbers = [c for c in X.columns if c != "alcohol_band"]
    encode = make_column_transformer((StandardScaler(), numbers), (OneHotEncoder(handle_unknown="ignore"), ["alcohol_band"]))
    Xtr, Xte, ytr, yte = _split(X, y, stratify=y)
    return Built(make_pipeline(encode, LogisticRegression(max_iter=2000)).fit(Xtr, ytr), Xte, yte)


def _breast_cancer_with_nan(fraction: float) -> tuple[Any, Any]:
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X = X.copy()
    X[np.random.default_rng(SEED).random(X.shape) < fraction] = np.nan
    return X, y


def hgb_nan() -> Built:
    """HistGradientBoosting fitted on breast_cancer with 20% of the cells missing: some splits send NaN one way and
    every number the other (their threshold is +inf)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    Xtr, Xte, ytr, yte = _split(*_breast_cancer_with_nan(0.2))
    return Built(HistGradientBoostingClassifier(max_iter=100, random_state=SEED).fit(Xtr, ytr), Xte, yte)


def _members() -> list[tuple[str, Any]]:
    """Two members that both scale the same 30 columns first (the way ensemble tutorials write them)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return [("lr", make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))),
            ("rf", make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=20, max_depth=5, random_state=SEED)))]


def stacking_shared_scaler() -> Built:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import StackingClassifier
    from sklearn.linear_model import LogisticRegression

    Xtr, Xte, ytr, yte = _split(*load_breast_cancer(return_X_y=True))
    model = StackingClassifier(_members(), final_estimator=LogisticRegression(max_iter=2000))
    return Built(model.fit(Xtr, ytr), Xte, yte)


def voting_shared_scaler() -> Built:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import VotingClassifier

    Xtr, Xte, ytr, yte = _split(*load_breast_cancer(return_X_y=True))
    return Built(VotingClassifier(_members(), voting="soft").fit(Xtr, ytr), Xte, yte)


def hgb_categorical_regressor() -> Built:
    """HistGradientBoostingRegressor on diabetes with its 'sex' column as a pandas categorical of text (scikit-learn
    ships it centred and scaled: the two values become "a" and "b")."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import HistGradientBoostingRegressor

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X = X.copy()
    X["sex"] = pd.Categorical(np.where(X["sex"] > 0, "b", "a"))
    Xtr, Xte, ytr, yte = _split(X, y)
    return Built(HistGradientBoostingRegressor(max_iter=80, random_state=SEED).fit(Xtr, ytr), Xte, yte)


def hgb_categorical_binary() -> Built:
    """Binary HistGradientBoostingClassifier with text class labels on wine with a four-band categorical column."""
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = _wine_frame(bands=4)
    X["alcohol_band"] = pd.Categorical(X["alcohol_band"])
    labels = np.where(np.asarray(y) == 0, "cultivar_1", "other")
    Xtr, Xte, ytr, yte = _split(X, labels, stratify=labels)
    return Built(HistGradientBoostingClassifier(max_iter=40, random_state=SEED).fit(Xtr, ytr), Xte, yte)


def function_transformer_logreg() -> Built:
    """A log transform written as FunctionTransformer(np.log1p) before scaling and LogisticRegression (wine)."""
    import numpy as np
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    Xtr, Xte, ytr, yte = _split(*load_wine(return_X_y=True))
    model = make_pipeline(FunctionTransformer(np.log1p), StandardScaler(), LogisticRegression(max_iter=2000))
    return Built(model.fit(Xtr, ytr), Xte, yte)


BUILDERS: dict[str, Callable[[], Built]] = {f.__name__: f for f in (
    wine_slash_column_transformer, hgb_nan, stacking_shared_scaler, voting_shared_scaler, hgb_categorical_regressor,
    hgb_categorical_binary, function_transformer_logreg)}
