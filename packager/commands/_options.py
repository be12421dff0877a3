"""Command-line flags derived from a request's fields (``packager.requests``): a field with ``cli`` metadata is a flag,
declared there once; the command collects the values by field name and builds the request from them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def request_options(cls: type, *, skip: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Add one click option per field of ``cls`` that declares one, in the fields' order. The field's default is the
    flag's (a ``split`` field's tuple written as the text a user would type)."""

    def decorate(func: F) -> F:
        for f in reversed(dataclasses.fields(cls)):
            spec = f.metadata.get("cli")
            if spec is None or f.name in skip:
                continue
            kwargs = {k: v for k, v in spec.items() if k != "decls"}
            if kwargs.get("type") == "path":
                kwargs["type"] = click.Path()
            if "choices" in kwargs:
                kwargs["type"] = click.Choice(list(kwargs.pop("choices")))
            if "split" in kwargs:
                kwargs["callback"] = _splitter(kwargs.pop("split"), kwargs.pop("item", str), f.default)
            if "default" not in kwargs and not _empty(f.default):
                kwargs["default"] = spec["split"].join(map(str, f.default)) if "split" in spec else f.default
            decls = spec["decls"] if f.name in spec["decls"] else (*spec["decls"], f.name)
            func = click.option(*decls, **kwargs)(func)
        return func

    return decorate


def _empty(default: Any) -> bool:
    """No default for click to show: what the option means when it is not given (None, off, none of them)."""
    return default is dataclasses.MISSING or default is None or default is False or default == ()


def _splitter(separator: str, item: Callable[[str], Any], default: Any) -> Callable[..., tuple[Any, ...]]:
    """A click callback: ``"a, b"`` -> ``("a", "b")`` (empty items dropped), each converted by ``item`` (a number type
    when it can fail: its ValueError is the one-line usage error)."""

    def split(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[Any, ...]:
        if value is None:
            return ()
        try:
            return tuple(item(part.strip()) for part in value.split(separator) if part.strip())
        except ValueError:
            from packager.errors import UsageError

            flag = max(param.opts, key=len)
            example = separator.join(map(str, default)) if default else "a,b"
            raise UsageError(f"{flag} {value!r} is not a list of numbers", f"e.g. {flag} {example}") from None

    return split


def request_fields(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values of ``cls``'s command-line fields among a command's parameters."""
    names = {f.name for f in dataclasses.fields(cls) if "cli" in f.metadata}
    return {k: v for k, v in values.items() if k in names}
