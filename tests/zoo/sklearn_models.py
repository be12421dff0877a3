"""scikit-learn models built the way real projects build them, on the datasets scikit-learn ships (no downloads).

Each builder returns a :class:`Built`: the fitted model and held-out rows it never saw, in the form a user
would feed them (float64 arrays, DataFrames with categorical columns, lists of sentences).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

SEED = 0


@dataclass(frozen=True)
class Built:
    """A fitted model and held-out inputs (and targets) from the same source as its training data."""

    model: Any
    X_test: Any
    y_test: Any = None


def _split(X, y, **kw):
    from sklearn.model_selection import train_test_split

    return train_test_split(X, y, test_size=0.25, random_state=SEED, **kw)


def scaler_logreg() -> Built:
    """The scikit-learn tutorial classifier: breast_cancer, StandardScaler then LogisticRegression."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xtr, Xte, ytr, yte = _split(*load_breast_cancer(return_X_y=True), stratify=load_breast_cancer().target)
    return Built(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(Xtr, ytr), Xte, yte)


def mlp_classifier() -> Built:
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xtr, Xte, ytr, yte = _split(*load_digits(return_X_y=True))
    model = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=SEED))
    return Built(model.fit(Xtr, ytr), Xte, yte)


def mlp_regressor() -> Built:
    from sklearn.datasets import load_diabetes
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xtr, Xte, ytr, yte = _split(*load_diabetes(return_X_y=True))
    model = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(32,), max_iter=2000, random_state=SEED))
    return Built(model.fit(Xtr, ytr), Xte, yte)


def linear_regression() -> Built:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression

    Xtr, Xte, ytr, yte = _split(*load_diabetes(return_X_y=True))
    return Built(LinearRegression().fit(Xtr, ytr), Xte, yte)


def svc() -> Built:
    from sklearn.datasets import load_wine
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    Xtr, Xte, ytr, yte = _split(*load_wine(return_X_y=True))
    return Built(make_pipeline(StandardScaler(), SVC(probability=True, random_state=SEED)).fit(Xtr, ytr), Xte, yte)


def pca_logreg() -> Built:
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    Xtr, Xte, ytr, yte = _split(*load_digits(return_X_y=True))
    return Built(make_pipeline(PCA(20, random_state=SEED), LogisticRegression(max_iter=2000)).fit(Xtr, ytr), Xte, yte)


def random_forest() -> Built:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    Xtr, Xte, ytr, yte = _split(*load_iris(return_X_y=True))
    return Built(RandomForestClassifier(50, random_state=SEED).fit(Xtr, ytr), Xte, yte)


SENTENCES = [
    ("the cat sat on the warm mat", 0), ("my dog loves long walks in the park", 0), ("our kitten chased a ball of yarn", 0),
    ("the puppy slept all afternoon", 0), ("cats and dogs can be friends", 0), ("she fed the hungry cat some fish", 0),
    ("the parrot repeated every word", 0), ("a loyal dog waits at the door", 0), ("the hamster ran on its wheel", 0),
    ("pets make a home feel alive", 0), ("the vet said the dog is healthy", 0), ("Le chat du café dort à l'été", 0),
    ("stock markets fell sharply today", 1), ("the central bank raised interest rates", 1), ("investors sold shares after the report", 1),
    ("bond yields rose for a third week", 1), ("the company reported record quarterly profit", 1),
    ("inflation slowed more than expected", 1),
    ("oil prices climbed on supply fears", 1), ("the currency weakened against the dollar", 1), ("shares of the bank dropped", 1),
    ("analysts expect slower growth next year", 1), ("the market rallied at the close", 1), ("Les marchés ÉTAIENT en baisse", 1),
]
HELD_OUT = [
    "my cat sleeps on the mat all day", "the dog chased the kitten", "markets rose after the bank report",
    "investors fear higher rates", "a puppy and a parrot at the vet", "profit fell, shares dropped!",
    "Le café du marché", "ÉTÉ: the dollar weakened", "oil and bonds", "the hamster's wheel squeaks",
]


def tfidf_logreg() -> Built:
    """Text classification as in the scikit-learn text tutorial, on hand-written sentences (with non-ASCII words)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    texts, labels = zip(*SENTENCES, strict=True)
    model = Pipeline([("tfidf", TfidfVectorizer()), ("clf", LogisticRegression(C=10, max_iter=1000))]).fit(list(texts), list(labels))
    return Built(model, list(HELD_OUT))


def hgb_categorical() -> Built:
    """HistGradientBoosting reading pandas categorical columns (categorical_features="from_dtype"), on wine with
    two binned columns turned into categories."""
    import pandas as pd
    from sklearn.datasets import load_wine
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = load_wine(return_X_y=True, as_frame=True)
    X = X.copy()
    X["alcohol_band"] = pd.Categorical(pd.cut(X["alcohol"], 3, labels=["low", "mid", "high"]).astype(str))
    X["hue_band"] = pd.Categorical(pd.cut(X["hue"], 2, labels=["pale", "deep"]).astype(str))
    Xtr, Xte, ytr, yte = _split(X, y)
    return Built(HistGradientBoostingClassifier(categorical_features="from_dtype", max_iter=50, random_state=SEED).fit(Xtr, ytr), Xte, yte)


def kmeans64() -> Built:
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_iris

    Xtr, Xte, _, _ = _split(*load_iris(return_X_y=True))
    return Built(KMeans(3, n_init=4, random_state=SEED).fit(Xtr), Xte)


def minibatch_kmeans() -> Built:
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.datasets import load_wine
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xtr, Xte, _, _ = _split(*load_wine(return_X_y=True))
    return Built(make_pipeline(StandardScaler(), MiniBatchKMeans(3, n_init=3, random_state=SEED)).fit(Xtr), Xte)


def calibrated_linear_svc() -> Built:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.datasets import load_breast_cancer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    Xtr, Xte, ytr, yte = _split(*load_breast_cancer(return_X_y=True))
    return Built(CalibratedClassifierCV(make_pipeline(StandardScaler(), LinearSVC(random_state=SEED))).fit(Xtr, ytr), Xte, yte)


def grid_search() -> Built:
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xtr, Xte, ytr, yte = _split(*load_wine(return_X_y=True))
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    search = GridSearchCV(pipeline, {"logisticregression__C": [0.1, 1.0, 10.0]}, cv=3)
    return Built(search.fit(Xtr, ytr), Xte, yte)


def randomized_search() -> Built:
    from sklearn.datasets import load_iris
    from sklearn.model_selection import RandomizedSearchCV
    from sklearn.tree import DecisionTreeClassifier

    Xtr, Xte, ytr, yte = _split(*load_iris(return_X_y=True))
    search = RandomizedSearchCV(DecisionTreeClassifier(random_state=SEED), {"max_depth": [2, 3, 4, 5]}, n_iter=3, cv=3, random_state=SEED)
    return Built(search.fit(Xtr, ytr), Xte, yte)


def transformed_target() -> Built:
    import numpy as np
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    Xtr, Xte, ytr, yte = _split(*load_diabetes(return_X_y=True))
    return Built(TransformedTargetRegressor(Ridge(), func=np.log, inverse_func=np.exp).fit(Xtr, ytr), Xte, yte)


def isolation_forest() -> Built:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import IsolationForest

    Xtr, Xte, _, _ = _split(*load_breast_cancer(return_X_y=True))
    return Built(IsolationForest(n_estimators=50, random_state=SEED).fit(Xtr), Xte)


def local_outlier_factor() -> Built:
    from sklearn.datasets import load_wine
    from sklearn.neighbors import LocalOutlierFactor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xtr, Xte, _, _ = _split(*load_wine(return_X_y=True))
    return Built(make_pipeline(StandardScaler(), LocalOutlierFactor(novelty=True)).fit(Xtr), Xte)


def one_class_svm() -> Built:
    from sklearn.datasets import load_iris
    from sklearn.svm import OneClassSVM

    Xtr, Xte, _, _ = _split(*load_iris(return_X_y=True))
    return Built(OneClassSVM(nu=0.1).fit(Xtr), Xte)


def imputer_nan() -> Built:
    """Missing values, as real tables have them: breast_cancer with 5% of cells blanked (train and held-out),
    SimpleImputer(median) -> StandardScaler -> LogisticRegression."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    X = X.copy()
    X[np.random.default_rng(SEED).random(X.shape) < 0.05] = np.nan
    Xtr, Xte, ytr, yte = _split(X, y)
    model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=1000))
    return Built(model.fit(Xtr, ytr), Xte, yte)


def linnerud_multioutput() -> Built:
    """Multi-output regression: linnerud's three physiological targets from three exercises, one Ridge per target."""
    from sklearn.datasets import load_linnerud
    from sklearn.linear_model import Ridge
    from sklearn.multioutput import MultiOutputRegressor

    Xtr, Xte, ytr, yte = _split(*load_linnerud(return_X_y=True))
    return Built(MultiOutputRegressor(Ridge(alpha=1.0)).fit(Xtr, ytr), Xte, yte)


def gradient_boosting() -> Built:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import GradientBoostingClassifier

    Xtr, Xte, ytr, yte = _split(*load_breast_cancer(return_X_y=True))
    return Built(GradientBoostingClassifier(n_estimators=50, max_depth=2, random_state=SEED).fit(Xtr, ytr), Xte, yte)


BUILDERS: dict[str, Callable[[], Built]] = {f.__name__: f for f in (
    scaler_logreg, mlp_classifier, mlp_regressor, linear_regression, svc, pca_logreg, random_forest, tfidf_logreg, hgb_categorical,
    kmeans64, minibatch_kmeans, calibrated_linear_svc, grid_search, randomized_search, transformed_target, isolation_forest,
    local_outlier_factor, one_class_svm, imputer_nan, linnerud_multioutput, gradient_boosting)}
