"""Text in, tokens out: packages that carry a tokenizer (``tokenizer.json`` + ``preprocessing.json``, written by the
Hugging Face plugin) are fed text by ``predict --text-column``. The tokenizer file already holds the padding and
truncation validation used, so the ids here are the ids the artifact was proven on. Only the ``tokenizers`` library
(Rust, reads JSON) is needed: no transformers at inference time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from packager.deps import require
from packager.errors import InputFileError, UsageError, first_line

PREPROCESSING, TOKENIZER = "preprocessing.json", "tokenizer.json"


@dataclass(frozen=True)
class TextPlan:
    """How a batch of a table becomes token feeds, and how the outputs become answers (labels with scores)."""

    column: str
    tokenizer: Any
    input_names: tuple[str, ...]
    output_name: str
    labels: tuple[str, ...] = ()
    task: str = ""

    @classmethod
    def from_package(cls, folder: Path, column: str) -> "TextPlan":
        folder = Path(folder)
        if not (folder / PREPROCESSING).is_file() or not (folder / TOKENIZER).is_file():
            raise UsageError(
                f"--text-column needs a package that carries a tokenizer; {folder.name} has none",
                "convert a Hugging Face model folder with `packager convert`, or feed token columns",
            )
        try:
            spec = json.loads((folder / PREPROCESSING).read_text())
            tokenizer = require("tokenizers", "huggingface", "tokenizing text").Tokenizer.from_file(str(folder / TOKENIZER))
        except (ValueError, OSError, Exception) as exc:
            raise InputFileError(
                f"the package's tokenizer cannot be read ({type(exc).__name__}: {first_line(exc)})",
                "re-create the package with `packager convert`",
            ) from exc
        labels = tuple(spec.get("labels", ()))
        return cls(column, tokenizer, tuple(spec["input_names"]), spec["output_name"], labels, str(spec.get("task") or ""))

    def check(self, columns: list[str]) -> None:
        if self.column not in columns:
            raise UsageError(f"the input has no column {self.column!r}", f"it has {columns[:20]}; name the text column with --text-column")

    def column_types(self) -> dict[str, Any]:
        import pyarrow as pa

        return {self.column: pa.string()}

    def feeds(self, batch: Any) -> dict[str, Any]:
        return self.tokenize(["" if t is None else str(t) for t in batch.column(self.column).to_pylist()])

    def tokenize(self, texts: list[str]) -> dict[str, Any]:
        """The model's int64 inputs for ``texts``, padded as the packaged tokenizer says (to the batch's longest text)."""
        import numpy as np

        encodings = self.tokenizer.encode_batch(texts)
        columns = {"input_ids": lambda e: e.ids, "attention_mask": lambda e: e.attention_mask, "token_type_ids": lambda e: e.type_ids}
        return {name: np.asarray([columns[name](e) for e in encodings], dtype=np.int64) for name in self.input_names}

    def answers(self, outputs: Mapping[str, Any], batch: Any = None) -> dict[str, Any]:
        """Classifiers: the label and its softmax probability beside the logits; token classifiers: one row per text
        with its tokens, their labels and scores (``token_rows``); embeddings as they are."""
        import numpy as np

        if not self.labels or self.output_name not in outputs:
            return dict(outputs)
        if self.task == "token-classification" and batch is not None:
            return self.token_rows(outputs, batch)
        logits = np.asarray(outputs[self.output_name], dtype=np.float64)
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
        best = probabilities.argmax(axis=-1)
        names = np.asarray(self.labels, dtype=object)[best]
        return {**outputs, "label": names, "score": probabilities.max(axis=-1).astype(np.float32)}

    def token_rows(self, outputs: Mapping[str, Any], batch: Any) -> dict[str, Any]:
        """Per text: its tokens, each one's label and softmax score, padding and special tokens ([CLS], [SEP]) dropped,
        as Hugging Face's token-classification pipeline reports them. The logits flattened were texts x max tokens x
        labels columns (896 for 128 tokens and 7 labels), padding included. The batch is tokenized again for the tokens:
        tokenizers' Rust encoder costs far less than the model."""
        import numpy as np

        logits = np.asarray(outputs[self.output_name], dtype=np.float64)
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
        texts = ["" if t is None else str(t) for t in batch.column(self.column).to_pylist()]
        tokens, labels, scores = [], [], []
        for row, encoding in enumerate(self.tokenizer.encode_batch(texts)):
            keep = [
                i
                for i, (m, special) in enumerate(zip(encoding.attention_mask, encoding.special_tokens_mask, strict=True))
                if m and not special
            ]
            best = probabilities[row, keep].argmax(axis=-1) if keep else np.zeros(0, dtype=np.int64)
            tokens.append([self._word(encoding, i, texts[row]) for i in keep])
            labels.append([self.labels[b] for b in best])
            scores.append([float(probabilities[row, i, b]) for i, b in zip(keep, best, strict=True)])
        return {"tokens": _lists(tokens), "labels": _lists(labels), "scores": _lists(scores)}

    def _word(self, encoding: Any, i: int, text: str) -> str:
        """The token as the vocabulary writes it ("##ing"); an unknown token as the text it stands for (the pipeline's rule)."""
        token = encoding.tokens[i]
        if token == getattr(self.tokenizer.model, "unk_token", None):
            start, end = encoding.offsets[i]
            return text[start:end]
        return token


def _lists(rows: list[list[Any]]) -> Any:
    """A 1-D object array holding one list per row (numpy would make a 2-D array of equal-length lists)."""
    import numpy as np

    array = np.empty(len(rows), dtype=object)
    array[:] = rows
    return array


def csv_cells(columns: Mapping[str, Any]) -> dict[str, Any]:
    """CSV cannot hold lists: a list per row becomes its JSON text (Parquet keeps list columns as they are)."""
    import numpy as np

    out = {}
    for name, values in columns.items():
        array = np.asarray(values) if not isinstance(values, np.ndarray) else values
        if array.dtype == object and len(array) and isinstance(array[0], list):
            array = np.asarray([json.dumps(v) for v in array], dtype=object)
        out[name] = array
    return out
