"""Round three of real models (issue 26): the deep-learning shapes a new user hit, built the way tutorials build them on
scikit-learn's bundled data, each saved as the file a user has.

- ``WineTwoInputs``: a torch module with two inputs (13 float features and an int64 "band" id looked up in an
  embedding) returning a dict ``{"logits", "proba"}``: the multi-task pattern of torchvision detection heads and HF
  ``ModelOutput``; saved traced with ``strict=False`` (a dict output needs it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SEED = 0


def wine_two_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Wine standardized (13 float32 columns), alcohol binned into 4 int64 bands, labels; the last 20% held out."""
    from sklearn.datasets import load_wine

    data = load_wine()
    x = data.data.astype(np.float64)
    band = np.digitize(x[:, 0], np.quantile(x[:, 0], [0.25, 0.5, 0.75])).astype(np.int64)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    order = np.random.default_rng(SEED).permutation(len(x))
    return x[order], band[order], data.target[order].astype(np.int64), order


def _torch_classes():
    import torch
    from torch import nn

    class WineTwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.band = nn.Embedding(4, 3)
            self.body = nn.Sequential(nn.Linear(13 + 3, 16), nn.ReLU(), nn.Linear(16, 3))

        def forward(self, x, band):
            logits = self.body(torch.cat([x, self.band(band)], dim=1))
            return {"logits": logits, "proba": torch.softmax(logits, dim=1)}

    return WineTwoInputs


def torch_two_inputs_dict() -> tuple[object, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(trained module, held-out feeds {"x", "band"}, training feeds)."""
    import torch

    x, band, y, _ = wine_two_inputs()
    cut = int(len(x) * 0.8)
    torch.manual_seed(SEED)
    model = _torch_classes()()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    xs, bs, ys = torch.from_numpy(x[:cut]), torch.from_numpy(band[:cut]), torch.from_numpy(y[:cut])
    for _ in range(80):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(xs, bs)["logits"], ys).backward()
        optimizer.step()
    model.eval()
    return model, {"x": x[cut:], "band": band[cut:]}, {"x": x[:cut], "band": band[:cut]}


def save_traced_dict(folder: Path) -> tuple[Path, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The traced .pt (strict=False: tracing a dict output needs it), its held-out .npz, and the module's outputs."""
    import torch

    model, held_out, _ = torch_two_inputs_dict()
    example = (torch.from_numpy(held_out["x"][:2]), torch.from_numpy(held_out["band"][:2]))
    with torch.no_grad():
        traced = torch.jit.trace(model, example, strict=False)
        expected = {k: v.numpy() for k, v in model(*(torch.from_numpy(held_out[n]) for n in ("x", "band"))).items()}
    path = folder / "wine_two_inputs_dict.pt"
    torch.jit.save(traced, path)
    np.savez(folder / "wine_two_inputs.npz", **held_out)
    return path, held_out, expected


def keras_two_inputs_bn():
    """The Keras functional-API guide's multi-input shape on wine: 13 standardized features through Dense +
    BatchNormalization, the band id through an Embedding, concatenated into a softmax head. (model, held-out feeds)."""
    import keras

    x, band, y, _ = wine_two_inputs()
    cut = int(len(x) * 0.8)
    keras.utils.set_random_seed(SEED)
    features = keras.Input((13,), name="features")
    band_in = keras.Input((1,), name="band", dtype="int64")
    h = keras.layers.BatchNormalization()(keras.layers.Dense(16, activation="relu")(features))
    b = keras.layers.Flatten()(keras.layers.Embedding(4, 3)(band_in))
    out = keras.layers.Dense(3, activation="softmax", name="cultivar")(keras.layers.Concatenate()([h, b]))
    model = keras.Model([features, band_in], out)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit({"features": x[:cut], "band": band[:cut, None]}, y[:cut], epochs=30, batch_size=32, verbose=0)
    return model, {"features": x[cut:], "band": band[cut:, None]}


def tf_module_savedmodel(folder: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A ``tf.Module`` with a ``@tf.function`` serving signature (the "Introduction to modules" guide), a linear model
    fitted to diabetes by least squares, saved with ``tf.saved_model.save``. (folder, held-out rows, expected)."""
    import tensorflow as tf
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    x = x.astype(np.float32)
    order = np.random.default_rng(SEED).permutation(len(x))
    x, y = x[order], y[order]
    cut = int(len(x) * 0.8)
    design = np.c_[x[:cut], np.ones(cut)]
    coef = np.linalg.lstsq(design, y[:cut], rcond=None)[0].astype(np.float32)

    class Linear(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(coef[:-1, None])
            self.b = tf.Variable(coef[-1:])

        @tf.function(input_signature=[tf.TensorSpec([None, 10], tf.float32, name="x")])
        def __call__(self, x):
            return {"progression": tf.matmul(x, self.w) + self.b}

    module = Linear()
    path = folder / "diabetes_tf_module"
    tf.saved_model.save(module, str(path), signatures=module.__call__)
    expected = module(tf.constant(x[cut:]))["progression"].numpy()
    return path, x[cut:], expected


def spark_label_indexer_first(spark: object, folder: Path, forest: bool = False) -> tuple[Path, Path, object]:
    """Spark's own tutorial order (the ML Pipelines guide, the random-forest examples): a StringIndexer turns the
    string label ("class_0".."class_2") into ``label`` first, then VectorAssembler and LogisticRegression, on wine.
    Scoring rows have no label column. (folder, scoring rows as .parquet without the label, scoring frame)."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression, RandomForestClassifier
    from pyspark.ml.feature import StringIndexer, VectorAssembler
    from sklearn.datasets import load_wine

    data = load_wine(as_frame=True)
    frame = data.frame.rename(columns=lambda c: c.replace("/", "_"))
    frame["cultivar"] = [f"class_{t}" for t in frame.pop("target")]
    features = [c for c in frame.columns if c != "cultivar"]
    pipeline = Pipeline(stages=[StringIndexer(inputCol="cultivar", outputCol="label"),
                                VectorAssembler(inputCols=features, outputCol="features"),
                                RandomForestClassifier(numTrees=20, maxDepth=4, seed=1) if forest else
                                LogisticRegression(maxIter=100, regParam=0.01)])
    model = pipeline.fit(spark.createDataFrame(frame))  # type: ignore[attr-defined]
    path = folder / ("wine_label_indexer_forest" if forest else "wine_label_indexer_first")
    model.write().overwrite().save(str(path))
    scoring = frame.drop(columns=["cultivar"])
    scoring.to_parquet(folder / "wine_scoring.parquet")
    return path, folder / "wine_scoring.parquet", model


# ---------------------------------------------------------------- zoo builders (registered in tests/zoo/catalog.py)

NER_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
NER_WORDS = ("john mary anna paris london berlin loved visited met in the and from station train today city went to "
             "a was very good trip with").split()
NER_TEXTS = ["john loved paris", "mary visited london and berlin", "anna met john in the city today",
             "the train from paris to berlin was very good", "john went to london with mary", "a trip to the station"]


def zoo_torch_two_inputs(folder: Path):
    from tests.zoo.catalog import LABELS, Saved

    path, held_out, expected = save_traced_dict(folder)
    return Saved(path, held_out, expected["logits"], LABELS, folder / "wine_two_inputs.npz")


def zoo_keras_two_inputs(folder: Path):
    from tests.zoo.catalog import LABELS, Saved

    model, held_out = keras_two_inputs_bn()
    path = folder / "wine_keras_two_inputs.keras"
    model.save(path)
    np.savez(folder / "wine_keras_two_inputs.npz", **held_out)
    return Saved(path, held_out, np.asarray(model(held_out, training=False)), LABELS, folder / "wine_keras_two_inputs.npz")


def zoo_tf_module(folder: Path):
    from tests.zoo.catalog import REGRESSION, Saved

    path, held_out, expected = tf_module_savedmodel(folder)
    return Saved(path, held_out, expected, REGRESSION)


def zoo_token_classifier(folder: Path):
    """A 2-layer BertForTokenClassification built from a config (no download), its WordPiece vocabulary over the words
    of the texts, the head trained a few steps to tag names and places; saved with save_pretrained as a user would.
    Held out: the tokenized texts; judged by cosine of each text's logits (texts x tokens x labels)."""
    import torch
    import transformers

    from tests.zoo.catalog import EMBEDDING, Saved

    path = folder / "ner_bert"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *NER_WORDS]
    tokenizer = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    torch.manual_seed(SEED)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64, num_labels=len(NER_LABELS),
                                     id2label=dict(enumerate(NER_LABELS)), label2id={v: i for i, v in enumerate(NER_LABELS)})
    model = transformers.BertForTokenClassification(config)
    tags = {"john": 1, "mary": 1, "anna": 1, "paris": 3, "london": 3, "berlin": 3}
    batch = tokenizer(NER_TEXTS, padding=True, return_tensors="pt")
    target = torch.tensor([[tags.get(tokenizer.convert_ids_to_tokens(int(i)), 0) for i in row] for row in batch["input_ids"]])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(30):
        optimizer.zero_grad()
        model(**batch, labels=target).loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    encoded = tokenizer(NER_TEXTS, padding=True, return_tensors="pt")
    held = {k: encoded[k].numpy() for k in ("input_ids", "attention_mask", "token_type_ids")}  # forward()'s order
    with torch.no_grad():
        expected = model(**{k: torch.from_numpy(v) for k, v in held.items()}).logits.numpy()
    return Saved(path, held, expected, EMBEDDING)


def zoo_spark_label_indexer(folder: Path):
    from tests.spark_support import start_session
    from tests.zoo.catalog import LABELS, Saved

    spark, _ = start_session()
    path, rows, model = spark_label_indexer_first(spark, folder, forest=True)
    import pandas as pd

    scoring = pd.read_parquet(rows)
    predicted = model.transform(spark.createDataFrame(scoring)).select("prediction").toPandas()["prediction"].astype(int)
    labels = np.asarray(model.stages[0].labelsArray[0], dtype=object)
    return Saved(path, scoring, labels[predicted.to_numpy()], LABELS, rows)
