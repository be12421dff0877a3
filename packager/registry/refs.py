"""Model references (``name``, ``name@3``, ``name@production``, ``name@sha256:<digest>``) and the
rules for names, aliases and tag keys (nothing that could walk the blob store or hide in a terminal)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from packager.errors import UsageError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")
KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,127}$")
DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference: exactly one of version / alias / digest, or none (= latest)."""

    name: str
    version: int | None = None
    alias: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> "ModelRef":
        name, sep, selector = text.partition("@")
        check_name(name)
        if not sep:
            return cls(name)
        if selector.isascii() and selector.isdigit():
            if len(selector) > 9:
                raise UsageError(f"{text!r}: version numbers have at most 9 digits", f"see `packager list {name}` for its versions")
            return cls(name, version=int(selector))
        if selector.startswith("sha256:"):
            digest = selector[len("sha256:") :]
            if not DIGEST_RE.fullmatch(digest):
                raise UsageError(f"{text!r}: a digest is 64 lowercase hex characters", "copy it from `packager show` or `packager list`")
            return cls(name, digest=digest)
        check_alias(selector)
        return cls(name, alias=selector)

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        if self.alias:
            return f"{self.name}@{self.alias}"
        if self.digest:
            return f"{self.name}@sha256:{self.digest}"
        return self.name


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name or ""):
        raise UsageError(
            f"invalid model name {name!r}",
            "use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return name


def check_alias(alias: str) -> str:
    if not ALIAS_RE.fullmatch(alias or ""):
        raise UsageError(f"invalid alias {alias!r}", "use a word such as production or staging (letters, digits, '.', '_', '-')")
    return alias


def check_key(key: str, what: str = "key") -> str:
    if not KEY_RE.fullmatch(key or ""):
        raise UsageError(f"invalid {what} {key!r}", "use letters, digits, '_', '.', '-' or '/' (at most 128)")
    return key


def check_value(value: str, what: str = "value") -> str:
    if len(value) > 4096 or any(ord(ch) < 32 and ch not in "\t" for ch in value) or "\x7f" in value:
        raise UsageError(f"invalid {what}: control characters or longer than 4096", "remove them")
    return value


def parse_pairs(items: tuple[str, ...] | list[str], what: str) -> dict[str, str]:
    """``k=v`` pairs from the command line."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--{what} {item!r} is not key=value", f"write --{what} name=value")
        pairs[check_key(key.strip(), what)] = check_value(value.strip(), what)
    return pairs
