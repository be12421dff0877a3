"""Export helpers of the huggingface plugin: the example inputs exporters trace with, the int8 quantization that keeps
transformer blocks accurate, and the Core ML op registrations coremltools lacks. Moved out of
``converters/huggingface.py`` unchanged (issue 22 item 5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from packager.deps import require, version_of
from packager.errors import ConversionError, first_line

from .huggingface_loading import TextModel


def example_inputs(model: TextModel, options) -> tuple:
    """The torch tensors a trace or export runs the module on: the first validation rows, in the tokenizer's input order
    (the ONNX export and the direct conversions share them)."""
    import numpy as np

    torch = require("torch", "torch", "Hugging Face models")
    return tuple(torch.from_numpy(np.ascontiguousarray(options.example[n])) for n in model.preprocessing.input_names)


INT8_BLOCK = 32  # weights and activations quantized per block of 32 along the inner dimension


def int8_for_transformers(path: Path) -> dict[str, Any]:
    """Dynamic int8 tuned for transformer encoders, in place: MatMul weights as 8-bit blocks of 32 (MatMulNBits) run with
    accuracy_level 4, i.e. int8 products on activations quantized per block at run time; the embedding tables (Gather)
    as int8 too, so the file is ~0.27x of fp32.

    Why not onnxruntime's quantize_dynamic on MatMul: it quantizes each activation tensor with one scale, and the FFN
    down-projection's input (GELU output) has outliers. Measured on all-MiniLM-L6-v2 against its fp32 export, min cosine
    on 1-5 / 10-20 / 60-90-word texts (30 each; benchmarks/results/transformer_int8_variants.md): quantize_dynamic
    per-channel 0.947 / 0.987 / 0.987 (MatMul only 0.962 / 0.989 / 0.987; reduce_range, per-tensor or the last layer in
    fp32 no better; the FFN in fp32 0.992 but as slow as fp32); this 0.997 / 0.999 / 0.999 at 3.4 ms against 9.3 ms fp32
    and 2.0 ms quantize_dynamic (batch 1, sequence 32, one thread, VNNI CPU)."""
    import onnx

    require("onnxruntime", "onnx", "ONNX quantization")
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from packager.deps import quiet_output
    from packager.errors import NotQuantizable

    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx")}
    if not ops & {"MatMul", "Gather"}:
        raise NotQuantizable("--quantize dynamic: the exported graph has no MatMul or Gather with weights", "drop --quantize")
    staged = path.with_name("model.nbits.onnx")
    try:
        with quiet_output():
            quantizer = MatMulNBitsQuantizer(model, block_size=INT8_BLOCK, is_symmetric=True, accuracy_level=4, bits=8)
            quantizer.process()
            quantizer.model.save_model_to_file(str(staged), use_external_data_format=False)
            # per-tensor: one scale per table measured the same cosines as per-channel and ran 2x faster (3.4 vs 7.4 ms)
            quantize_dynamic(str(staged), str(path), weight_type=QuantType.QInt8, per_channel=False, op_types_to_quantize=["Gather"])
    except Exception as exc:
        raise ConversionError(f"onnxruntime int8 quantization failed: {first_line(exc, 200)}", "try --quantize fp16") from exc
    finally:
        staged.unlink(missing_ok=True)
    done = onnx.load(str(path), load_external_data=False)
    counts = {op: sum(n.op_type == op for n in done.graph.node) for op in ("MatMulNBits", "DynamicQuantizeLinear", "MatMul")}
    return {
        "mode": "dynamic",
        "operators": ["MatMul", "Gather"],
        "method": "MatMulNBits int8 weights, accuracy_level 4 (int8 compute, activations per block); Gather int8",
        "block_size": INT8_BLOCK,
        "per_channel": False,
        "reduce_range": False,
        "nodes": counts,
        "tool": f"onnxruntime {version_of('onnxruntime')}",
    }


def _register_coreml_new_ones() -> None:
    """coremltools 9.0's torch frontend has no ``aten::new_ones``, which transformers 5 emits while building the attention
    mask (measured: all-MiniLM-L6-v2 fails with "PyTorch convert function for op 'new_ones' not implemented", eager and sdpa
    attention alike). It is ``ones`` of a given size and dtype; registered once, only when coremltools lacks it."""
    import numpy as np
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import NUM_TO_NUMPY_DTYPE, _get_inputs
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY, register_torch_op

    if "new_ones" in _TORCH_OPS_REGISTRY:
        return

    def new_ones(context, node):
        inputs = _get_inputs(context, node)
        size = inputs[1]
        if size.val is not None:  # the usual case: a constant size, often () for a scalar
            shape = tuple(int(v) for v in np.atleast_1d(size.val)) if np.size(size.val) else ()
            ones = mb.const(val=np.ones(shape, dtype=np.float32))
        else:
            ones = mb.fill(shape=mb.cast(x=size, dtype="int32"), value=1.0)
        dtype = inputs[2].val if len(inputs) > 2 and inputs[2] is not None else None
        target = {bool: "bool", np.bool_: "bool", np.int32: "int32", np.float16: "fp16"}.get(NUM_TO_NUMPY_DTYPE.get(dtype))
        context.add(mb.cast(x=ones, dtype=target, name=node.name) if target else mb.identity(x=ones, name=node.name))

    register_torch_op(new_ones)
