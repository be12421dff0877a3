"""safetensors as a target and a runtime: tensors only, no code, so safe by construction once its header is checked.

A torch module's state dict converts to ``model.safetensors`` (``--to safetensors``). The file alone has no architecture:
it runs only where the package names one, i.e. a Hugging Face package (``config.json`` and ``preprocessing.json`` beside
it, rebuilt by transformers); otherwise validation checks its structure (every tensor of the source's state dict present,
same dtype and shape) and says it did not execute it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from packager.contract import Artifact, Format, Runtime
from packager.deps import require, version_of
from packager.errors import UnsupportedConversion, converting
from packager.plugins import converts, runs
from packager.safety.safetensors import check_safetensors, looks_like_safetensors
from packager.signature import Signature
from packager.validation import SAME_KERNELS, criteria_table


@converts("torch", to="safetensors", note="the module's state dict (shared tensors written once); runs where a model class is known")
def torch_to_safetensors(model: Any, signature: Signature, out: Path, options) -> Any:
    torch = require("torch", "torch", "safetensors export")
    safetensors_torch = require("safetensors.torch", "torch", "safetensors export")
    if isinstance(model, torch.jit.ScriptModule) or not hasattr(model, "state_dict"):
        raise UnsupportedConversion(
            "a TorchScript module carries its code; safetensors holds only the weights", "convert the Python nn.Module"
        )
    path = out / "model.safetensors"
    with converting(f"safetensors could not save {type(model).__name__}", "check the module's state_dict"):
        safetensors_torch.save_model(
            model, str(path), metadata={"format": "pt", "module": f"{type(model).__module__}:{type(model).__qualname__}"}
        )
    return Artifact(
        path, {"safetensors": version_of("safetensors"), "tensors": len(model.state_dict()), "module": type(model).__qualname__}
    )


def _check(path: Path) -> None:
    check_safetensors(path)


# its header is bounds-checked (packager.safety.safetensors) before anything maps the file
SAFETENSORS = Format(
    "safetensors",
    title="safetensors (tensors only, no code)",
    suffix=".safetensors",
    detect=lambda path, head: looks_like_safetensors(head),
    check=_check,
)


@runs(SAFETENSORS, criteria=criteria_table({None: SAME_KERNELS}))
class SafetensorsRuntime(Runtime):
    """Executes a Hugging Face package's weights in transformers; otherwise a structure check."""

    name = "safetensors"
    distribution = "safetensors"

    def can_execute(self, path: Path) -> bool:
        folder = Path(path).parent
        return (folder / "config.json").is_file() and (folder / "preprocessing.json").is_file()

    def check(self, path: Path, signature: Signature) -> dict[str, Any]:
        from packager.safety.safetensors import check_safetensors

        header = check_safetensors(path)
        dtypes = sorted({dtype for dtype, _ in header.tensors.values()})
        return {
            "tensors": len(header.tensors),
            "parameters": header.parameters,
            "dtypes": dtypes,
            "metadata": header.metadata,
            "note": "a state dict alone does not say its architecture: loaded into the model class, it runs in torch",
        }

    def load(self, path: Path, *, trust: bool = False, threads: int | None = None) -> Any:
        from .huggingface_package import load_saved_text_model

        return load_saved_text_model(Path(path))

    def predict(self, handle: Any, signature: Signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
        from .huggingface_package import run_module

        module, preprocessing = handle
        return run_module(module, preprocessing, feeds)
