"""One typed error hierarchy: every failure a user can cause maps to one class and one exit code.

Each error carries *what* failed and a *hint* saying what to do next; the CLI prints both on one
line and exits with ``exit_code``. Tracebacks are shown only with ``--debug``.
"""

from __future__ import annotations

import contextlib
from typing import Mapping, Union


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's first message line, for one-line errors (its class name when the message is empty)."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__


TRACE_CHARS = 8000  # the tail of a sandboxed child's traceback kept for `packager --debug`


class PackagerError(Exception):
    """Base of every error packager raises on purpose."""

    exit_code = 1
    child_traceback = ""  # the sandboxed child's traceback (where a plugin failed), printed by --debug

    def __init__(self, what: str, hint: str = ""):
        self.what = what
        self.hint = hint
        super().__init__(f"{what}. {hint}" if hint else what)

    def one_line(self) -> str:
        text = " ".join(str(self).split())
        return f"{type(self).__name__}: {text}"


class UsageError(PackagerError):
    """The command line or API call itself is inconsistent (bad option combination, bad shape)."""

    exit_code = 2


class SampleError(UsageError):
    """The source model itself fails on the sample inputs (unknown categories, wrong kind of data)."""


class InputFileError(PackagerError):
    """A file the user gave cannot be read: missing, truncated, random bytes, unknown format."""

    exit_code = 4


class UnsafeModelError(PackagerError):
    """A model file would import or call something outside the allow-list when loaded."""

    exit_code = 5


class MissingDependency(PackagerError):
    """An optional framework, converter, runtime or Java is not installed."""

    exit_code = 3


class UnsupportedConversion(PackagerError):
    """No converter handles this (source, target) pair, or the converter refuses this model."""

    exit_code = 6


class NotApplicable(UnsupportedConversion):
    """A target whose converter declares it takes only some models (``@converts(applies=...)``: compiled trees take tree
    ensembles), asked for by ``--to all`` with another model: skipped, and named in one summary line."""


class ConversionError(PackagerError):
    """A converter library failed on a model it claims to support."""

    exit_code = 7


class NotQuantizable(PackagerError):
    """The requested quantization cannot apply to this artifact (nothing to quantize)."""

    exit_code = 8


class ValidationFailed(PackagerError):
    """The converted artifact does not reproduce the source model within tolerance."""

    exit_code = 9

    def __init__(self, what: str, hint: str = "", report=None):
        super().__init__(what, hint)
        self.report = report


class OutputExists(PackagerError):
    """The output location is taken and overwriting was not requested."""

    exit_code = 10


class PluginError(PackagerError):
    """A converter plugin is broken: registered twice, or its entry point cannot be loaded."""

    exit_code = 11


class BlobCorrupt(PackagerError):
    """A stored blob is missing or does not hash to its name."""

    exit_code = 12


class SignatureRefused(PackagerError):
    """The trust policy refuses a version: unsigned where a signature is required, signed by a key not trusted,
    or a signature that does not match the files. The integrity class: the same exit code as BlobCorrupt."""

    exit_code = 12


class PromotionRefused(PackagerError):
    """An alias is protected (``packager alias protect``) and the version does not meet its rules."""

    exit_code = 12


class Forbidden(PackagerError):
    """A registry server refused the request: the token is valid but lacks the scope, or the model is outside its
    names (HTTP 403)."""

    exit_code = 15


class CatalogError(PackagerError):
    """The registry's catalog database cannot be opened or written."""

    exit_code = 13


class NotFound(PackagerError):
    """A model, version or alias the registry does not hold."""

    exit_code = 14


class Unauthorized(PackagerError):
    """A registry server refused the request: missing or wrong token (HTTP 401)."""

    exit_code = 15


class RequestTooLarge(UsageError):
    """A request body over the registry server's limit for that route (HTTP 413)."""


class PackagerWarning(UserWarning):
    """Something the user should know that does not stop the work (e.g. a pickle from another version)."""


@contextlib.contextmanager
def reading(label: str, hint: str = "the file is truncated or corrupt; re-export it from the training code"):
    """At a file-reading boundary, any failure of the library doing the reading becomes one
    InputFileError naming the file (ours pass through unchanged)."""
    try:
        yield
    except PackagerError:
        raise
    except Exception as exc:  # zipfile, protobuf, h5py, skops, numpy ... each has its own errors
        raise InputFileError(f"{label} cannot be read ({type(exc).__name__}: {first_line(exc)})", hint) from exc


Translation = Union[type, "tuple[type, str]"]  # our error class, or (class, hint)


@contextlib.contextmanager
def converting(
    what: str,
    hint: str = "try another --opset or target, or report the model to the converter's project",
    mapping: Mapping[type | tuple[type, ...], Translation] | None = None,
):
    """At a converter boundary, a foreign exception becomes one of ours (httpx's ``map_exceptions``): the mapping
    entry for the most specific matching type wins (by the exception's MRO), anything else is a ConversionError.
    The message is ``what`` and the library's first line; ours pass through unchanged::

        with converting("skl2onnx cannot convert KNN", mapping={MissingConverter: (UnsupportedConversion, "use --to skops")}):
            to_onnx(model, X[:1])
    """
    try:
        yield
    except PackagerError:
        raise
    except Exception as exc:
        cls, chosen_hint = _translation(exc, mapping or {}, hint)
        raise cls(f"{what}: {type(exc).__name__}: {first_line(exc)}", chosen_hint) from exc


def _translation(exc: Exception, mapping: Mapping, hint: str) -> tuple[type, str]:
    mro = type(exc).__mro__
    best, rank = (ConversionError, hint), len(mro)
    for types, target in mapping.items():
        for kind in types if isinstance(types, tuple) else (types,):
            if kind in mro and mro.index(kind) < rank:
                best, rank = (target if isinstance(target, tuple) else (target, hint)), mro.index(kind)
    return best
