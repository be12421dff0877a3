"""The search language, compiled to SQL so a search over 100,000 versions stays an indexed query.

    metric.accuracy > 0.9 and tag.team = "fraud" and format = "onnx"
    (param.max_depth >= 6 or alias = production) and not quantization = "dynamic"

Fields: name, version, format, quantization, validation, description, created, alias,
metric.<key>, param.<key>, tag.<key>. Operators: = != > >= < <= ~ (contains).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from packager.errors import UsageError

TOKEN = re.compile(
    r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<op>>=|<=|!=|==|=|>|<|~)|(?P<paren>[()])|(?P<word>[^\s()=!<>~"']+))"""
)
PLAIN_FIELDS = {"name", "version", "format", "quantization", "validation", "description", "created", "alias"}
PREFIXED = ("metric.", "param.", "tag.")
HINT = 'example: metric.accuracy > 0.9 and tag.team = "fraud" and format = "onnx"'
# Bounds that keep a search a small, fast query (and the parser off Python's recursion limit: 300 nested
# parentheses or 495 'not's raised RecursionError). A real filter has a handful of comparisons, nesting of 2 or 3.
MAX_QUERY_CHARS = 2000
MAX_DEPTH = 20  # parentheses and 'not's, nested
MAX_COMPARISONS = 50  # each one is an EXISTS subquery over metrics, params or tags
MAX_LIMIT = 100_000


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class BoolOp:
    op: str  # and / or / not
    items: tuple


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise UsageError(f"cannot read the search at {text[pos : pos + 20]!r}", HINT)
        kind = match.lastgroup
        assert kind is not None  # every alternative of TOKEN is a named group
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str):
        if len(text) > MAX_QUERY_CHARS:
            raise UsageError(f"the search is {len(text)} characters long (limit {MAX_QUERY_CHARS})", "shorten it: " + HINT)
        self.tokens = tokenize(text)
        self.pos = 0
        self.depth = self.comparisons = 0

    def nested(self):
        """Count one level of nesting (a '(' or a 'not') on the way in, refusing beyond MAX_DEPTH."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise UsageError(f"the search nests parentheses and 'not' more than {MAX_DEPTH} deep", "flatten it: " + HINT)

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise UsageError("the search ends too early", HINT)
        self.pos += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token and token[0] == "word" and token[1].lower() == word:
            self.pos += 1
            return True
        return False

    def parse(self):
        node = self.or_expr()
        if self.peek() is not None:
            raise UsageError(f"unexpected {self.peek()[1]!r} in the search", HINT)
        return node

    def or_expr(self):
        items = [self.and_expr()]
        while self.keyword("or"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def and_expr(self):
        items = [self.not_expr()]
        while self.keyword("and"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def not_expr(self):
        if self.keyword("not"):
            self.nested()
            node = BoolOp("not", (self.not_expr(),))
            self.depth -= 1
            return node
        return self.atom()

    def atom(self):
        kind, text = self.take()
        if kind == "paren" and text == "(":
            self.nested()
            node = self.or_expr()
            if self.peek() != ("paren", ")"):
                raise UsageError("a '(' in the search is not closed", HINT)
            self.take()
            self.depth -= 1
            return node
        if kind != "word":
            raise UsageError(f"expected a field name, found {text!r}", HINT)
        field = _check_field(text)
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise UsageError(f"the search has more than {MAX_COMPARISONS} comparisons", "split it into several searches")
        op_kind, op = self.take()
        if op_kind != "op":
            raise UsageError(f"expected an operator after {field}, found {op!r}", "use = != > >= < <= or ~")
        value_kind, value = self.take()
        if value_kind not in ("word", "str"):
            raise UsageError(f"expected a value after {field} {op}", HINT)
        return Comparison(field, "=" if op == "==" else op, _value(value_kind, value))


def _check_field(name: str) -> str:
    if name in PLAIN_FIELDS or (name.startswith(PREFIXED) and len(name.split(".", 1)[1]) > 0):
        return name
    raise UsageError(
        f"unknown search field {name!r}", "fields: " + ", ".join(sorted(PLAIN_FIELDS)) + ", metric.<key>, param.<key>, tag.<key>"
    )


def _value(kind: str, text: str) -> Any:
    """A quoted string (backslash escapes the next character), else a number when it reads as one, else the word."""
    if kind == "str":
        return re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.DOTALL)
    if re.fullmatch(r"[+-]?[0-9]{1,18}", text):  # beyond that a database integer overflows: compare as a float
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def parse(text: str):
    return _Parser(text).parse()


def check_limit(limit: int | None) -> int | None:
    """A row limit the database takes: 1..MAX_LIMIT (SQLite reads a negative LIMIT as none, and overflows past 64 bits)."""
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"limit {limit} is out of range", f"give a limit from 1 to {MAX_LIMIT}")
    return limit


def compile_filter(node, t) -> Any:
    """SQLAlchemy boolean expression over ``versions`` (``t`` is packager.registry.schema)."""
    from sqlalchemy import and_, exists, not_, or_, select

    if isinstance(node, BoolOp):
        parts = [compile_filter(item, t) for item in node.items]
        return {"and": and_, "or": or_}[node.op](*parts) if node.op != "not" else not_(parts[0])
    field, op, value = node.field, node.op, node.value
    if field.startswith("metric."):
        if not isinstance(value, (int, float)):
            raise UsageError(f"{field} is a number; {value!r} is not", "compare metrics with numbers")
        table = t.metrics
        return exists(select(1).where(table.c.version_id == t.versions.c.id, table.c.key == field[7:], _op(table.c.value, op, value)))
    if field.startswith(("param.", "tag.")):
        table = t.params if field.startswith("param.") else t.tags
        numeric = op in (">", ">=", "<", "<=") and isinstance(value, (int, float))
        column = as_number(table.c.value) if numeric else table.c.value  # text values never match a numeric comparison
        return exists(
            select(1).where(
                table.c.version_id == t.versions.c.id,
                table.c.key == field.split(".", 1)[1],
                _op(column, op, value if numeric else str(value)),
            )
        )
    if field == "alias":
        return exists(select(1).where(t.aliases.c.version_id == t.versions.c.id, _op(t.aliases.c.alias, op, str(value))))
    if field == "name":
        return _op(t.models.c.name, op, str(value))
    if field == "version" and not isinstance(value, int):
        raise UsageError(f"version is a whole number; {value!r} is not", "example: version >= 3")
    if field == "created":
        value = _timestamp(value)
    return _op(t.versions.c[field], op, value if field in ("version", "created") else str(value))


def _timestamp(value: Any):
    import datetime as dt

    try:
        stamp = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise UsageError(f"created is a date; {value!r} is not", 'example: created >= "2026-11-01" (ISO 8601)') from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc)


class as_number(FunctionElement):
    """A text column as a float where it holds a well-formed number, else NULL (Postgres would raise on a bad CAST)."""

    type = Float()
    inherit_cache = True


@compiles(as_number)
def _as_number_default(element, compiler, **kw):  # SQLite: CAST('6abc' AS NUMERIC) is 6, but only a real number equals its own cast
    column = compiler.process(element.clauses, **kw)
    return f"(CASE WHEN CAST({column} AS NUMERIC) = {column} THEN CAST({column} AS REAL) END)"


@compiles(as_number, "postgresql")
def _as_number_postgres(element, compiler, **kw):
    column = compiler.process(element.clauses, **kw)
    return (
        f"(CASE WHEN {column} ~ '^\\s*[-+]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?\\s*$'"
        f" THEN CAST({column} AS DOUBLE PRECISION) END)"
    )


def _op(column, op: str, value: Any):
    if op == "=":
        return column == value
    if op == "!=":
        return column != value
    if op == ">":
        return column > value
    if op == ">=":
        return column >= value
    if op == "<":
        return column < value
    if op == "<=":
        return column <= value
    if op == "~":
        return column.contains(str(value))
    raise UsageError(f"unknown operator {op}", "use = != > >= < <= or ~")
