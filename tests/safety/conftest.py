"""A tiny Hugging Face folder built here (no download), shared by the folder and config-size tests."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 1-layer BERT (hidden 32, random init) and its tokenizer, saved as a user would (no download)."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("onnxruntime")
    folder = tmp_path_factory.mktemp("hf") / "bert"
    folder.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"the a movie was good bad it is".split(), *"abcdefghijklmnopqrstuvwxyz"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(str(folder))
    config = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64
    )
    transformers.BertModel(config).eval().save_pretrained(str(folder))
    return folder
