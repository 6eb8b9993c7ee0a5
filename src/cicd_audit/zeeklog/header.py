"""A Zeek log's header (``LogHeader``) and the reader's format error (``LogFormatError``).

API::

    LogHeader(path, fields, types, separator, set_separator, empty_field,
              unset_field, open, close, format, meta)   # .schema
    LogFormatError(InputError)                # .filename, .lineno, .reason
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import InputError
from .schema import Schema


class LogFormatError(InputError):
    """A malformed Zeek log: the message names the file and the line."""

    def __init__(self, filename, lineno: int | None, message: str):
        self.filename = os.fspath(filename)
        self.lineno = lineno
        self.reason = message
        where = self.filename if lineno is None else "%s, line %d" % (self.filename, lineno)
        super().__init__(f"{where}: {message}")


@dataclass
class LogHeader:
    """What a log says about itself (TSV header lines; JSON: from the schema)."""

    path: str | None
    fields: tuple[str, ...]
    types: tuple[str, ...]
    separator: str = "\t"
    set_separator: str = ","
    empty_field: str = "(empty)"
    unset_field: str = "-"
    open: str | None = None
    close: str | None = None
    format: str = "tsv"
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def schema(self) -> Schema:
        return Schema.from_header(self.path or "unknown", self.fields, self.types)
