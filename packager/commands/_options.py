"""Command-line flags derived from a request's fields (``packager.requests``): a field with ``cli`` metadata is a flag,
declared there once; the command collects the values by field name and builds the request from them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def request_options(cls: type, *, skip: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Add one click option per field of ``cls`` that declares one, in the fields' order."""

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
            decls = spec["decls"] if f.name in spec["decls"] else (*spec["decls"], f.name)
            func = click.option(*decls, **kwargs)(func)
        return func

    return decorate


def request_fields(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values of ``cls``'s command-line fields among a command's parameters."""
    names = {f.name for f in dataclasses.fields(cls) if "cli" in f.metadata}
    return {k: v for k, v in values.items() if k in names}
