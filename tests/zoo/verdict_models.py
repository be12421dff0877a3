"""Zoo models for the verdict rules of issue 26, built on scikit-learn's bundled data as tutorials build them.

- ``poly_ridge_raw``: PolynomialFeatures(2) + Ridge on RAW diabetes (``scaled=False``): squares of s1 (up to 280)
  exceed float16's 65504, so an fp16 graph gives inf where scikit-learn is finite.
- ``tfidf_sublinear``: TF-IDF with ``sublinear_tf=True`` + LogisticRegression: skl2onnx computes log(tf + 1) where
  scikit-learn computes 1 + log(tf), so the fp32 ONNX graph is already off (and every quantized child with it).
- ``voting_gnb_soft``: soft voting over LogisticRegression, GaussianNB and a tree on breast_cancer.
- ``lgbm_ranker``: LightGBM's LambdaRank on diabetes rows grouped in queries: its output is a ranking score.
- ``hgb_regressor``: HistGradientBoostingRegressor on raw diabetes (``predict model.pkl`` must run on float64).
"""
from __future__ import annotations

from typing import Callable

from tests.zoo.sklearn_models import SEED, Built, _split

SENTENCES = [
    "the battery lasts all day and charges fast", "battery died after an hour, very poor", "great screen, great sound",
    "the screen cracked on the first day", "fast delivery and the phone works well", "slow, hot and the battery drains",
    "excellent camera in low light", "the camera is blurry and the app crashes", "love it, love it, love it",
    "refund please, it stopped working", "solid build, good value for money", "cheap plastic, broke in a week",
    "works great with my old charger", "charger not included and the cable is short", "the best phone I have owned",
    "worst purchase this year, returned it", "battery battery battery: superb battery", "crash crash crash, useless",
]
SENTIMENT = [1, 0] * 9


def poly_ridge_raw() -> Built:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures

    X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    Xtr, Xte, ytr, _ = _split(X, y)
    return Built(make_pipeline(PolynomialFeatures(degree=2), Ridge()).fit(Xtr, ytr), Xte)


def tfidf_sublinear() -> Built:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = SENTENCES * 4
    model = make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression(max_iter=1000)).fit(texts, SENTIMENT * 4)
    import numpy as np

    return Built(model, np.array(SENTENCES, dtype=object))


def voting_gnb_soft() -> Built:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import VotingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    Xtr, Xte, ytr, _ = _split(*load_breast_cancer(return_X_y=True))
    members = [
        ("lr", make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))),
        ("nb", GaussianNB()),
        ("tree", DecisionTreeClassifier(max_depth=3, random_state=SEED)),
    ]
    return Built(VotingClassifier(members, voting="soft", flatten_transform=False).fit(Xtr, ytr), Xte)


def lgbm_ranker() -> Built:
    import numpy as np
    from lightgbm import LGBMRanker
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    relevance = np.digitize(y, np.quantile(y, [0.25, 0.5, 0.75]))  # 0..3 graded relevance
    Xtr, Xte, ytr, _ = _split(X, relevance)
    order = np.argsort(np.arange(len(Xtr)) % 33, kind="stable")  # 33 queries of ~10 rows, contiguous
    model = LGBMRanker(n_estimators=40, num_leaves=8, min_child_samples=5, random_state=SEED, verbose=-1)
    model.fit(Xtr[order], ytr[order], group=np.bincount(np.arange(len(Xtr)) % 33))
    return Built(model, Xte)


def hgb_regressor() -> Built:
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import HistGradientBoostingRegressor

    X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    Xtr, Xte, ytr, _ = _split(X, y)
    return Built(HistGradientBoostingRegressor(max_iter=100, random_state=SEED).fit(Xtr, ytr), Xte)


BUILDERS: dict[str, Callable[[], Built]] = {
    "poly_ridge_raw": poly_ridge_raw,
    "tfidf_sublinear": tfidf_sublinear,
    "voting_gnb_soft": voting_gnb_soft,
    "lgbm_ranker": lgbm_ranker,
    "hgb_regressor": hgb_regressor,
}


def entries() -> tuple:
    """The catalog entries (tests/zoo/catalog.py CATALOG), each saved as a pickle the way a user has it."""
    from tests.zoo.catalog import LABELS, REGRESSION, Entry, Refusal, Saved

    def saved(name: str, kind: str):
        def build(folder):
            import pickle

            import numpy as np

            built = BUILDERS[name]()
            path = folder / f"{name}.pkl"
            path.write_bytes(pickle.dumps(built.model, protocol=pickle.HIGHEST_PROTOCOL))
            sample = folder / f"{name}_held_out.csv"  # the verdict on the user's rows (issue 26 is about what they see)
            frame = built.X_test if hasattr(built.X_test, "to_csv") else None
            if frame is None and np.asarray(built.X_test).dtype == object:
                import pandas as pd

                frame = pd.DataFrame({"text": built.X_test})
            if frame is None:
                sample = sample.with_suffix(".npy")
                np.save(sample, built.X_test)
            else:
                frame.to_csv(sample, index=False)
            return Saved(path, built.X_test, np.asarray(built.model.predict(built.X_test)), kind, sample)

        return build

    tfidf = Refusal(r"ValidationFailed: .*probabilities.*sublinear_tf", "skl2onnx: log(tf + 1) for sublinear_tf, scikit-learn 1 + log(tf)")
    int8_raw = Refusal(r"ValidationFailed: .*expected values' spread", "int8 MatMul weights on raw squares of diabetes (to 78400): R² < 0")
    no_ranker = Refusal(r"skl2onnx has no ONNX converter for LGBMRanker", "skl2onnx and onnxmltools register no LGBMRanker converter")
    mleap = Refusal(r"mleap cannot serialise (LGBMRanker|HistGradientBoostingRegressor)", "not in mleap's scikit-learn estimators")
    trees = Refusal(r"no operator with int8 weights", "ai.onnx.ml tree operators have no int8 form")
    sample = ("--sample", "{sample}")
    return (
        Entry("raw_diabetes_poly_ridge", "sklearn", "diabetes, scaled=False", saved("poly_ridge_raw", REGRESSION), sample,
              known={"onnx+dynamic": int8_raw}),
        Entry("reviews_tfidf_sublinear", "sklearn", "hand-written reviews", saved("tfidf_sublinear", LABELS), sample,
              refused={"onnx": tfidf}, known={"onnx": tfidf, "onnx+dynamic": tfidf}),
        Entry("diabetes_lgbm_ranker", "sklearn", "diabetes in 33 queries", saved("lgbm_ranker", REGRESSION), sample,
              refused={"onnx": no_ranker, "onnx+dynamic": no_ranker, "mleap": mleap}),
        Entry("raw_diabetes_hgb_regressor", "sklearn", "diabetes, scaled=False", saved("hgb_regressor", REGRESSION), sample,
              refused={"onnx+dynamic": trees, "mleap": mleap}),
    )
