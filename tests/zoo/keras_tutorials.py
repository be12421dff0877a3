"""Keras models written the way the Keras and TensorFlow tutorials write them, fitted (a few epochs) on
scikit-learn's bundled datasets, not shaped around packager's code.

Each builder returns ``(model, held_out)``: the fitted model and held-out inputs it was not trained on.
No data is downloaded: the IMDB-style text classifier trains on random token ids with a fixed seed
(the shapes and layers are what matter there, not the accuracy).
"""
from __future__ import annotations

import os

SEED = 0
EPOCHS = 2  # enough to move every weight off its initial value; tests stay in seconds


def _setup():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    keras.utils.set_random_seed(SEED)
    return keras, keras.layers, np


def _split(x, y, np):
    order = np.random.default_rng(SEED).permutation(len(x))
    cut = int(len(x) * 0.8)
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def _fit(model, x, y, loss="sparse_categorical_crossentropy"):
    model.compile(optimizer="adam", loss=loss)
    model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0)
    return model


def _dataset(x, y):
    """Strings go to fit() as a tf.data pipeline, as the text tutorials do (Keras 3 rejects numpy object arrays)."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((tf.constant(x.tolist()), y)).batch(32)


def sequential_iris():
    """The "first neural network" tutorial: ``keras.Sequential([keras.Input(...), Dense, Dense])``."""
    from sklearn.datasets import load_iris

    keras, layers, np = _setup()
    data = load_iris()
    x_train, y_train, x_test, _ = _split(data.data.astype("float32"), data.target, np)
    model = keras.Sequential([
        keras.Input(shape=(4,)),
        layers.Dense(16, activation="relu"),
        layers.Dense(3, activation="softmax"),
    ])
    return _fit(model, x_train, y_train), x_test


def sequential_input_shape_digits():
    """The older style: ``Dense(..., input_shape=(64,))`` as the first layer, with Dropout."""
    from sklearn.datasets import load_digits

    keras, layers, np = _setup()
    data = load_digits()
    x_train, y_train, x_test, _ = _split((data.data / 16.0).astype("float32"), data.target, np)
    model = keras.Sequential([
        layers.Dense(32, activation="relu", input_shape=(64,)),
        layers.Dropout(0.2),
        layers.Dense(10),
    ])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=EPOCHS, verbose=0)
    return model, x_test


def sequential_unbuilt():
    """A Sequential with no Input and never called: it has no weights and no input shape."""
    keras, layers, np = _setup()
    model = keras.Sequential([layers.Dense(8, activation="relu"), layers.Dense(1)])
    return model, np.zeros((4, 3), "float32")


def normalization_diabetes():
    """The regression tutorial: ``norm = layers.Normalization(); norm.adapt(x)`` in a functional model."""
    from sklearn.datasets import load_diabetes

    keras, layers, np = _setup()
    data = load_diabetes()
    x_train, y_train, x_test, _ = _split(data.data.astype("float32") * 50 + 3, data.target.astype("float32"), np)
    norm = layers.Normalization(axis=-1)
    norm.adapt(x_train)
    inputs = keras.Input(shape=(10,))
    x = norm(inputs)
    x = layers.Dense(32, activation="relu")(x)
    outputs = layers.Dense(1)(x)
    model = keras.Model(inputs, outputs)
    return _fit(model, x_train, y_train, loss="mean_absolute_error"), x_test


def normalization_sequential_breast_cancer():
    """Normalization first in a Sequential, then BatchNormalization and Dropout (binary classifier)."""
    from sklearn.datasets import load_breast_cancer

    keras, layers, np = _setup()
    data = load_breast_cancer()
    x_train, y_train, x_test, _ = _split(data.data.astype("float32"), data.target.astype("float32"), np)
    norm = layers.Normalization()
    norm.adapt(x_train)
    model = keras.Sequential([
        keras.Input(shape=(30,)),
        norm,
        layers.Dense(16, activation="relu"),
        layers.BatchNormalization(),
        layers.Dropout(0.3),
        layers.Dense(1, activation="sigmoid"),
    ])
    return _fit(model, x_train, y_train, loss="binary_crossentropy"), x_test


def rescaling_cnn_digits():
    """The image-classification tutorial on 8x8 digits: Rescaling(1/16), Conv2D, MaxPooling, Flatten."""
    from sklearn.datasets import load_digits

    keras, layers, np = _setup()
    data = load_digits()
    images = data.images.astype("float32")[..., None]
    x_train, y_train, x_test, _ = _split(images, data.target, np)
    model = keras.Sequential([
        keras.Input(shape=(8, 8, 1)),
        layers.Rescaling(1.0 / 16),
        layers.Conv2D(8, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(10),
    ])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=EPOCHS, verbose=0)
    return model, x_test


def imdb_lstm():
    """The IMDB text classifier: Embedding + LSTM + Dense(sigmoid) over padded token ids (random, seeded)."""
    keras, layers, np = _setup()
    rng = np.random.default_rng(SEED)
    vocab, length = 500, 40
    ids = rng.integers(1, vocab, (320, length)).astype("int32")
    labels = (ids[:, :5].mean(axis=1) > vocab / 2).astype("float32")
    model = keras.Sequential([
        keras.Input(shape=(length,), dtype="int32"),
        layers.Embedding(vocab, 16),
        layers.LSTM(16),
        layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(ids[:256], labels[:256], epochs=1, batch_size=64, verbose=0)
    return model, ids[256:]


def imdb_gru():
    """The same text classifier with a bidirectional GRU and a softmax over two classes (random token ids, seeded)."""
    keras, layers, np = _setup()
    rng = np.random.default_rng(SEED + 1)
    vocab, length = 400, 30
    ids = rng.integers(1, vocab, (320, length)).astype("int32")
    labels = (ids[:, -4:].mean(axis=1) > vocab / 2).astype("int64")
    model = keras.Sequential([
        keras.Input(shape=(length,), dtype="int32"),
        layers.Embedding(vocab, 16),
        layers.Bidirectional(layers.GRU(8)),
        layers.Dense(2, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(ids[:256], labels[:256], epochs=1, batch_size=64, verbose=0)
    return model, ids[256:]


def integer_lookup_iris():
    """A preprocessing layer with a vocabulary: IntegerLookup one-hot over a categorical int column."""
    from sklearn.datasets import load_iris

    keras, layers, np = _setup()
    data = load_iris()
    codes = (data.data[:, :1] * 2).astype("int64")  # sepal length in half-cm bins, as a category
    x_train, y_train, x_test, _ = _split(codes, data.target, np)
    lookup = layers.IntegerLookup(output_mode="one_hot")
    lookup.adapt(x_train)
    inputs = keras.Input(shape=(1,), dtype="int64")
    outputs = layers.Dense(3, activation="softmax")(layers.Dense(8, activation="relu")(lookup(inputs)))
    model = keras.Model(inputs, outputs)
    return _fit(model, x_train, y_train), x_test


def string_lookup():
    """StringLookup over a string column: ONNX/TFLite cannot take every string op, so refusals must be clear."""
    keras, layers, np = _setup()
    rng = np.random.default_rng(SEED)
    words = np.array(["red", "green", "blue", "cyan"])
    x = words[rng.integers(0, 4, (200, 1))].astype(object)  # Keras fits on object arrays of str, not numpy unicode
    y = (x[:, 0] == "red").astype("float32")
    lookup = layers.StringLookup(output_mode="one_hot")
    lookup.adapt(x)
    inputs = keras.Input(shape=(1,), dtype="string")
    outputs = layers.Dense(1, activation="sigmoid")(lookup(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(_dataset(x[:160], y[:160]), epochs=EPOCHS, verbose=0)
    return model, x[160:]


def text_vectorization():
    """TextVectorization inside the model (string input), the "text classification from scratch" shape."""
    keras, layers, np = _setup()
    rng = np.random.default_rng(SEED)
    vocab = np.array(["good", "bad", "film", "plot", "great", "awful", "actor", "scene"])
    texts = np.array([" ".join(vocab[rng.integers(0, 8, 6)]) for _ in range(200)], dtype=object)
    y = np.array([("good" in t or "great" in t) for t in texts], "float32")
    vectorize = layers.TextVectorization(max_tokens=20, output_sequence_length=8)
    vectorize.adapt(texts)
    inputs = keras.Input(shape=(1,), dtype="string")
    x = layers.GlobalAveragePooling1D()(layers.Embedding(20, 8)(vectorize(inputs)))
    model = keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(_dataset(texts[:160, None], y[:160]), epochs=EPOCHS, verbose=0)
    return model, texts[160:, None]


BUILDERS = {
    "sequential_iris": sequential_iris,
    "sequential_input_shape_digits": sequential_input_shape_digits,
    "normalization_diabetes": normalization_diabetes,
    "normalization_sequential_breast_cancer": normalization_sequential_breast_cancer,
    "rescaling_cnn_digits": rescaling_cnn_digits,
    "imdb_lstm": imdb_lstm,
    "imdb_gru": imdb_gru,
    "integer_lookup_iris": integer_lookup_iris,
    "string_lookup": string_lookup,
    "text_vectorization": text_vectorization,
}
