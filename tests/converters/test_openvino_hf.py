"""Hugging Face folders -> OpenVINO in one edge, through OpenVINO's PyTorch front end: the IR keeps each attention block
as one ScaledDotProductAttention (the ONNX route decomposes it), its batch and sequence dimensions stay dynamic, the
OpenVINO quantize modes apply unchanged, and the graph takes this edge over huggingface -> onnx -> openvino. Every IR is
re-run here by OpenVINO itself, at two batch sizes and two lengths, against transformers' own answer."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from packager.conversion import convert

os.environ["HF_HUB_OFFLINE"] = "1"
pytest.importorskip("openvino")
transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

WORDS = "the a movie film was great bad good awful boring fun plot acting i loved hated it this and but very not".split()
TEXTS = ["the movie was great", "i hated the plot but the acting was very good and the film was fun", "boring"]
SHAPES = ((1, 5), (5, 23))  # (batch, tokens): two of each, neither the traced example's (3 texts)


def _folder(root: Path, name: str, head: bool) -> Path:
    """A 2-layer BERT (hidden 64, 4 heads), random init, saved with its tokenizer as a user would; ``head``: a 3-label
    sequence classifier (logits and probabilities out), else a bare encoder (feature extraction, mean pooling)."""
    folder = root / name
    folder.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=64, num_labels=3,
    )  # fmt: skip
    model = (transformers.BertForSequenceClassification if head else transformers.BertModel)(config).eval()
    if head:
        with torch.no_grad():  # a trained head separates the classes; random init leaves the logits within ~0.01
            model.classifier.weight.mul_(50.0)
    model.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf-ov")
    (root / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    return {"encoder": _folder(root, "encoder", False), "classifier": _folder(root, "classifier", True), "root": root}


def _feeds(batch: int, tokens: int, seed: int) -> dict[str, np.ndarray]:
    """Token ids with padding on all but the first row (the mask must matter), token types 0."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 5 + len(WORDS), size=(batch, tokens)).astype(np.int64)
    mask = np.ones_like(ids)
    for row in range(1, batch):
        mask[row, rng.integers(1, tokens) :] = 0
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def _transformers_answer(folder: Path, head: bool, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """What transformers computes, written here (not packager's wrapper): mean pooling over the mask for the encoder,
    logits and their softmax for the classifier."""
    cls = transformers.BertForSequenceClassification if head else transformers.BertModel
    model = cls.from_pretrained(str(folder)).eval()
    tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}
    with torch.no_grad():
        out = model(**tensors)
    if head:
        return [out.logits.numpy(), torch.softmax(out.logits, -1).numpy()]
    mask = tensors["attention_mask"].unsqueeze(-1).float()
    return [((out.last_hidden_state * mask).sum(1) / mask.sum(1)).numpy()]


def _run_ir(folder: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The packaged IR compiled and run by OpenVINO directly, at f32, outputs by their names (fed the inputs it has: an
    ONNX export drops one the graph never reads)."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(folder / "openvino" / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled({port.get_any_name(): feeds[port.get_any_name()] for port in compiled.inputs})
    return {port.get_any_name(): np.asarray(result[port]) for port in compiled.outputs}


@pytest.mark.parametrize("which", ["encoder", "classifier"])
def test_hf_folder_reaches_openvino_through_the_pytorch_front_end_with_dynamic_batch_and_length(folders, which, tmp_path):
    head = which == "classifier"
    package = convert(folders[which], to="openvino", sample=folders["root"] / "texts.txt", out=tmp_path / "pkg", trust=True)
    conversion, validation = package.manifest.conversion, package.manifest.validation
    assert conversion["converter"] == "packager.converters.openvino.hf_to_openvino" and "hops" not in conversion, conversion
    assert conversion["front_end"] == "pytorch (torch.jit.trace)" and conversion["operations"]["ScaledDotProductAttention"] == 2
    assert validation["status"] == "passed" and validation["runtime"] == "openvino", validation
    xml = (package.path / "openvino" / "model.xml").read_text()
    assert len(re.findall(r'type="ScaledDotProductAttention"', xml)) == 2  # one per layer: the ONNX route has none
    assert len(re.findall(r'type="softmax"', xml, re.IGNORECASE)) == (1 if head else 0)  # the classifier's probabilities only
    assert (package.path / "tokenizer.json").is_file() and (package.path / "preprocessing.json").is_file()
    names = ["logits", "probabilities"] if head else ["sentence_embedding"]
    for seed, (batch, tokens) in enumerate(SHAPES):
        feeds = _feeds(batch, tokens, seed)
        got = _run_ir(package.path, feeds)
        want = _transformers_answer(folders[which], head, feeds)
        assert sorted(got) == sorted(names)
        for name, expected in zip(names, want, strict=True):
            assert got[name].shape == expected.shape == ((batch, 3) if head else (batch, 64))
            assert np.abs(got[name] - expected).max() < 1e-4, (which, batch, tokens, name, np.abs(got[name] - expected).max())


def test_openvino_quantize_modes_apply_to_the_direct_edge_unchanged(folders, tmp_path):
    """The edge offers the modes of the ONNX -> OpenVINO edge (the same quantizer runs on its IR): int8 weights through
    NNCF keep the fused attention and are judged against the source with the int8 criterion."""
    pytest.importorskip("nncf")
    from packager.plugins import default_registry

    registry = default_registry()
    assert registry.conversions[("huggingface", "openvino")].quantize == registry.conversions[("onnx", "openvino")].quantize
    package = convert(
        folders["classifier"], to="openvino", quantize="weights", sample=folders["root"] / "texts.txt", out=tmp_path / "pkg", trust=True
    )
    quant = package.manifest.quantization
    assert quant.applied and quant.mode == "weights" and quant.size_after < 0.6 * quant.size_before, quant
    assert package.manifest.validation["status"] == "passed" and package.manifest.validation["parent"]["status"] == "passed"
    xml = (package.path / "openvino" / "model.xml").read_text()
    assert len(re.findall(r'type="ScaledDotProductAttention"', xml)) == 2 and re.search(r'element_type="u8" shape="64, 64"', xml)
    feeds = _feeds(2, 9, 7)
    got = _run_ir(package.path, feeds)["logits"]
    want = _transformers_answer(folders["classifier"], True, feeds)[0]
    assert 0 < np.abs(got - want).max() < 0.05 * (want.max() - want.min())  # int8: close, not bit-equal
    assert (got.argmax(1) == want.argmax(1)).all()


def test_the_graph_takes_the_direct_edge_for_hugging_face_and_keeps_onnx_for_the_rest():
    """The graph's first rule: a direct edge from the source wins over any longer path. Other frameworks still reach
    OpenVINO through ONNX, and a Hugging Face folder still reaches ONNX."""
    from packager.plugins import default_registry

    registry = default_registry()
    assert [h.name for h in registry.route("huggingface", "openvino").hops] == ["packager.converters.openvino.hf_to_openvino"]
    assert registry.route("huggingface", "onnx").hops[0].name == "packager.converters.huggingface.hf_to_onnx"
    for source in ("torch", "keras", "sklearn"):
        assert registry.route(source, "openvino").via == ("onnx",), source


SHRINK_CODE = '''
import torch
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput


class ShrinkConfig(PretrainedConfig):
    model_type = "shrink-encoder"

    def __init__(self, vocab_size=64, hidden_size=16, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.hidden_size = vocab_size, hidden_size


class ShrinkModel(PreTrainedModel):
    config_class = ShrinkConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = torch.nn.Embedding(config.vocab_size, config.hidden_size)
        self.proj = torch.nn.Linear(config.hidden_size, config.hidden_size)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, **kwargs):
        hidden = torch.nn.functional.hardshrink(self.proj(self.embed(input_ids)), 0.1)
        return BaseModelOutput(last_hidden_state=hidden)
'''


def test_a_module_the_pytorch_front_end_cannot_take_reaches_openvino_through_onnx(tmp_path):
    """OpenVINO 2026.4's PyTorch front end has no rule for ``aten::hardshrink`` (ONNX has Shrink): a folder whose own code
    (remote code, run with --trust) uses it takes the ONNX route inside the edge, says so, and still matches its source
    at two batch sizes and two lengths."""
    import importlib
    import sys

    folder = tmp_path / "shrink"
    folder.mkdir()
    (folder / "modeling_shrink.py").write_text(SHRINK_CODE)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(str(folder))
    sys.path.insert(0, str(folder))
    try:
        code = importlib.import_module("modeling_shrink")
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("modeling_shrink", None)
    auto_map = {"AutoConfig": "modeling_shrink.ShrinkConfig", "AutoModel": "modeling_shrink.ShrinkModel"}
    torch.manual_seed(0)
    source = code.ShrinkModel(code.ShrinkConfig(vocab_size=len(vocab), architectures=["ShrinkModel"], auto_map=auto_map)).eval()
    source.save_pretrained(str(folder))
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    package = convert(folder, to="openvino", sample=tmp_path / "texts.txt", out=tmp_path / "pkg", trust=True)
    conversion = package.manifest.conversion
    assert conversion["front_end"] == "onnx (the PyTorch front end failed)" and conversion["via"] == "onnx", conversion
    assert conversion["front_end_error"] == "no conversion rule for aten::hardshrink", conversion["front_end_error"]
    assert package.manifest.validation["status"] == "passed"
    assert sorted(p.name for p in package.path.iterdir() if not p.name.startswith(("MLmodel", "input_", "python_", "requirements"))) == [
        "manifest.json", "openvino", "preprocessing.json", "tokenizer.json", "tokenizer_config.json",
    ]  # fmt: skip  (no ONNX file or hop folder left behind)
    for seed, (batch, tokens) in enumerate(SHAPES):
        feeds = _feeds(batch, tokens, seed)
        feeds["input_ids"] %= len(vocab)
        with torch.no_grad():
            hidden = source(input_ids=torch.from_numpy(feeds["input_ids"])).last_hidden_state
        mask = torch.from_numpy(feeds["attention_mask"]).unsqueeze(-1).float()
        want = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
        got = _run_ir(package.path, feeds)
        assert np.abs(got["sentence_embedding"] - want).max() < 1e-5, (batch, tokens)
