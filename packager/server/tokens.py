"""Scoped server tokens, one per line of the token file::

    TOKEN [SCOPES] [names=GLOB[,GLOB]] [name=LABEL]

``SCOPES`` is a comma-separated subset of ``read``, ``write`` (push, tag, sign, delete), ``alias`` (set, move,
remove, roll back) and ``admin`` (everything, plus gc, verify, trust keys, promotion rules). A bare token keeps
its old meaning: full access. Every valid token may read. ``names=`` limits the models a token may touch, reads
included (shell globs, ``team-a-*``: any other model is a 403, and lists, search and the audit log leave it out);
``name=`` is the label the audit log records as the actor (default: ``token-<line>``, never the secret). ``TOKEN``
may be ``sha256:<hex>``, the digest of the secret, so the file need not hold it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from packager.errors import Forbidden, UsageError

SCOPES = ("read", "write", "alias", "admin")
_HEX = re.compile(r"^sha256:[0-9a-f]{64}$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")


@dataclass(frozen=True)
class Token:
    digest: str  # sha256 of the secret, hex: what is compared (the plaintext is never kept)
    scopes: frozenset[str]
    names: tuple[str, ...] = ()  # globs; empty: every model
    label: str = "token"

    def allows(self, scope: str) -> bool:
        return scope == "read" or "admin" in self.scopes or scope in self.scopes

    def covers(self, name: str) -> bool:
        return not self.names or any(fnmatch.fnmatchcase(name, glob) for glob in self.names)


ANONYMOUS = Token("", frozenset({"read"}), (), "anonymous")


def parse_line(line: str, number: int = 1) -> Token:
    """One token-file line; an unknown scope or option is a UsageError naming the line (never echoing the secret)."""
    fields = line.split()
    secret, rest = fields[0], fields[1:]
    if _HEX.fullmatch(secret):
        digest = secret[len("sha256:") :]
    elif secret.startswith("sha256:"):
        raise UsageError(
            f"token file line {number}: a sha256: token is 64 lowercase hex digits", "write sha256:$(printf %s SECRET | sha256sum)"
        )
    else:
        digest = hashlib.sha256(secret.encode()).hexdigest()
    scopes: set[str] = set()
    names: tuple[str, ...] = ()
    label = f"token-{number}"
    for field in rest:
        key, sep, value = field.partition("=")
        if sep and key == "names":
            names = tuple(g for g in value.split(",") if g)
            if not names:  # an empty list meant "every model": `names=$TEAM` with $TEAM unset failed open (redteam24)
                raise UsageError(
                    f"token file line {number}: names= lists no glob", "write names=GLOB[,GLOB], or leave names= out for every model"
                )
        elif sep and key == "name":
            if not _LABEL.fullmatch(value):
                raise UsageError(
                    f"token file line {number}: name={value!r} is not a label", "use letters, digits, '.', '_', ':', '@' or '-'"
                )
            label = value
        elif not sep:
            wanted = {s for s in field.split(",") if s}
            unknown = sorted(wanted - set(SCOPES))
            if unknown:
                raise UsageError(f"token file line {number}: unknown scope {', '.join(unknown)}", f"scopes are {', '.join(SCOPES)}")
            scopes |= wanted
        else:
            raise UsageError(f"token file line {number}: unknown option {key}=", "options are names=GLOB[,GLOB] and name=LABEL")
    return Token(digest, frozenset(scopes or {"admin"}), names, label)  # a bare token: full access, as before scopes existed


def parse_tokens(lines: Iterable[str]) -> list[Token]:
    tokens = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if text and not text.startswith("#"):
            tokens.append(parse_line(text, number))
    labels = [t.label for t in tokens]
    if len(set(labels)) != len(labels):
        raise UsageError("two tokens in the token file have the same name=", "give every token its own label: the audit log names it")
    return tokens


def read_token_file(path: str | Path) -> list[Token]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--token-file {path}: no such file", "create it with one token per line")
    tokens = parse_tokens(path.read_text().splitlines())
    if not tokens:
        raise UsageError(f"--token-file {path} holds no token", "write one token per line")
    return tokens


def find(tokens: Iterable[Token], presented: str) -> Token | None:
    """The token whose digest is that of ``presented``; every entry is compared, in constant time each."""
    digest = hashlib.sha256(presented.encode()).hexdigest()
    found = None
    for token in tokens:
        if hmac.compare_digest(digest, token.digest) and found is None:
            found = token
    return found


def visible(token: Token, items: Iterable[Any], name: Callable[[Any], str] = lambda v: v.name) -> list[Any]:
    """The items (versions, by default) about models the token's names= cover: lists, search and the audit log of a
    names-limited token show only its models, as reading any other one is a 403."""
    return [item for item in items if token.covers(name(item))]


def prune_lineage(token: Token, tree: dict[str, Any]) -> dict[str, Any]:
    """The derivation tree with every node outside the token's names= left out (its covered descendants move up to the
    nearest covered ancestor); the root is then the covered tree holding the focus, which the route already checked."""
    if not token.names:
        return tree

    def keep(node: dict[str, Any]) -> list[dict[str, Any]]:
        kids = [kept for child in node["children"] for kept in keep(child)]
        if token.covers(node["ref"].partition("@")[0]):
            return [{**node, "children": sorted(kids, key=lambda n: n["version"])}]
        return kids

    def holds_focus(node: dict[str, Any]) -> bool:
        return bool(node["focus"]) or any(holds_focus(child) for child in node["children"])

    return next(root for root in keep(tree) if holds_focus(root))


def require_name(token: Token, name: str) -> None:
    if not token.covers(name):
        raise Forbidden(
            f"the token {token.label!r} may not touch model {name!r} (its names: {','.join(token.names)})",
            "use a token whose names= covers it",
        )


def require_every_name(token: Token, what: str) -> None:
    """Trusted keys and gc are registry-wide: a key trusted by a ``names=team-a-*`` admin would make ``--verify required``
    accept that key's signatures on every team's models, and removing one would refuse theirs (redteam24)."""
    if token.names:
        raise Forbidden(
            f"the token {token.label!r} is limited to {','.join(token.names)} and {what} applies to every model",
            "use an admin token without names=",
        )
