"""A log file's bytes, plain or gzip, with the reader's limits enforced.

API::

    read_bytes(path, limits=None) -> bytes    # LogLimitError, LogFormatError (bad gzip)
    log_name_from_path(path) -> str           # "dns.log.gz" -> "dns"
"""

from __future__ import annotations

import os

from .header import LogFormatError
from .limits import DEFAULT_LIMITS, CorruptGzip, ReadLimits, read_bounded


def read_bytes(path, limits: ReadLimits | None = None) -> bytes:
    try:
        return read_bounded(path, limits or DEFAULT_LIMITS)
    except CorruptGzip as e:
        raise LogFormatError(os.fspath(path), None, f"bad gzip data ({e})") from None


def log_name_from_path(path) -> str:
    base = os.path.basename(os.fspath(path))
    return base.split(".", 1)[0]
