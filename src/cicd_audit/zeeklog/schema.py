"""Zeek log schemas: field names and Zeek types, loaded from data files.

The schemas live in ``zeek_schemas/<path>.tsv`` (shipped as the package
``cicd_audit.zeek_schemas``). Each non-comment line is
``field<TAB>zeek-type<TAB>description``; comment lines start with ``#`` and the
first one is ``# path<TAB><name>``. Field names, order and types of conn, dns
and weird are exactly Zeek 9.1's, so the writer and the reader share one source
of truth (STYLE.md practice 7).

API::

    Field(name, type, doc="")            # one column; .container, .element_type
    Schema(path, fields)                 # .names, .types, .extended(extra_fields)
    Schema.from_header(path, names, types)
    load_schema(path_name) -> Schema     # packaged zeek_schemas/<path_name>.tsv
    parse_schema(text, source) -> Schema
    available_schemas() -> list[str]
    parse_type(type_name) -> (container | None, element_type)

Extension: cicd-audit appends its own columns (e.g. process attribution) after
Zeek's with ``load_schema("conn").extended([Field("proc.pid", "count"), ...])``.
Zeek's columns keep their positions, so Zeek tools still read the first ones
with their usual meaning.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources

__all__ = [
    "ATOMIC_TYPES",
    "Field",
    "Schema",
    "SchemaError",
    "available_schemas",
    "load_schema",
    "parse_schema",
    "parse_type",
]

#: Zeek type names that may appear in a log's ``#types`` line as a column type
#: or as the element type of ``set[...]``/``vector[...]``.
ATOMIC_TYPES = frozenset(
    {
        "bool",
        "count",
        "int",
        "double",
        "time",
        "interval",
        "port",
        "addr",
        "subnet",
        "enum",
        "string",
        "pattern",
        "file",
        "func",
    }
)

_CONTAINER_RE = re.compile(r"^(set|vector)\[([a-z]+)\]$")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class SchemaError(ValueError):
    """A schema file or field definition is invalid."""


def parse_type(type_name: str) -> tuple[str | None, str]:
    """Split a Zeek type name: ``"set[string]"`` -> ``("set", "string")``,
    ``"count"`` -> ``(None, "count")``. Raises SchemaError for unknown types."""
    m = _CONTAINER_RE.match(type_name)
    if m:
        container, element = m.group(1), m.group(2)
    else:
        container, element = None, type_name
    if element not in ATOMIC_TYPES:
        raise SchemaError(f"unknown Zeek type {type_name!r}")
    return container, element


@dataclass(frozen=True)
class Field:
    """One log column: its name (dots kept flat, e.g. ``id.orig_h``), its Zeek
    type name as written in ``#types`` and a one-line description."""

    name: str
    type: str
    doc: str = ""

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise SchemaError(f"invalid field name {self.name!r}")
        parse_type(self.type)  # validates

    @property
    def container(self) -> str | None:
        """``"set"``, ``"vector"`` or None for an atomic field."""
        return parse_type(self.type)[0]

    @property
    def element_type(self) -> str:
        """The atomic type: the column's own type, or its elements' type."""
        return parse_type(self.type)[1]


@dataclass(frozen=True)
class Schema:
    """A log's path (``conn``, ``dns``, ...) and its ordered fields."""

    path: str
    fields: tuple[Field, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        seen = set()
        for f in self.fields:
            if not isinstance(f, Field):
                raise SchemaError(f"schema {self.path}: {f!r} is not a Field")
            if f.name in seen:
                raise SchemaError(f"schema {self.path}: duplicate field {f.name!r}")
            seen.add(f.name)
        if not self.path or any(c in self.path for c in "/\\\t\n"):
            raise SchemaError(f"invalid log path {self.path!r}")
        # Computed once: the writers look a schema up per row, and the generated hash walks every field.
        object.__setattr__(self, "_hash", hash((self.path, self.fields)))

    def __hash__(self) -> int:
        return self._hash

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(f.type for f in self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __iter__(self) -> Iterator[Field]:
        return iter(self.fields)

    def __contains__(self, name: object) -> bool:
        return any(f.name == name for f in self.fields)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"schema {self.path} has no field {name!r}")

    def extended(self, extra_fields: Iterable[Field]) -> Schema:
        """A new schema with ``extra_fields`` appended after the existing ones.
        Names must not repeat existing ones (SchemaError)."""
        return Schema(self.path, self.fields + tuple(extra_fields))

    @classmethod
    def from_header(cls, path: str, names: Sequence[str], types: Sequence[str]) -> Schema:
        """Build a schema from a log's own ``#fields``/``#types`` lines."""
        if len(names) != len(types):
            raise SchemaError(f"{len(names)} field names but {len(types)} types")
        return cls(path, tuple(Field(n, t) for n, t in zip(names, types)))


def parse_schema(text: str, source: str = "<schema>") -> Schema:
    """Parse the text of a ``zeek_schemas/*.tsv`` file."""
    path = None
    fields = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            body = line[1:].strip()
            if path is None and body.startswith("path\t"):
                path = body.split("\t", 1)[1].strip()
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise SchemaError(f"{source}:{lineno}: expected field<TAB>type<TAB>description")
        try:
            fields.append(Field(parts[0], parts[1], parts[2] if len(parts) > 2 else ""))
        except SchemaError as e:
            raise SchemaError(f"{source}:{lineno}: {e}") from None
    if path is None:
        raise SchemaError(f"{source}: missing '# path<TAB><name>' comment line")
    try:
        return Schema(path, tuple(fields))
    except SchemaError as e:
        raise SchemaError(f"{source}: {e}") from None


def _schema_dir():
    return resources.files("cicd_audit.zeek_schemas")


def available_schemas() -> list:
    """Names of the packaged schemas (``conn``, ``dns``, ...)."""
    return sorted(
        p.name[: -len(".tsv")] for p in _schema_dir().iterdir() if p.name.endswith(".tsv")
    )


@functools.cache
def load_schema(path_name: str) -> Schema:
    """Load the packaged schema ``zeek_schemas/<path_name>.tsv``."""
    if not re.match(r"^[A-Za-z0-9_-]+$", path_name):
        raise SchemaError(f"invalid schema name {path_name!r}")
    res = _schema_dir().joinpath(path_name + ".tsv")
    if not res.is_file():
        raise SchemaError(
            "no schema {!r} (available: {})".format(path_name, ", ".join(available_schemas()))
        )
    schema = parse_schema(res.read_text(encoding="utf-8"), f"zeek_schemas/{path_name}.tsv")
    if schema.path != path_name:
        raise SchemaError(
            f"zeek_schemas/{path_name}.tsv declares path {schema.path!r}"
        )
    return schema
