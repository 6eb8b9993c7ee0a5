"""Read Zeek logs (ours or real Zeek's) into Python records or pandas.

API::

    read_log(path, schema=None, errors="backslashreplace")
        -> (LogHeader, iterator of dict)      # TSV or JSON lines, plain or .gz
    read_dataframe(path, schema=None, errors="backslashreplace", limits=None,
                   chunk_bytes=16 MiB) -> DataFrame
    iter_frames(path, ...)  -> the same frame piece by piece (one chunk at a time)
    load_logs(*session_dirs, errors="backslashreplace", skip=()) -> LoadedLogs
        # LoadedLogs(conn, dns, weird, capture_stats, notice): one DataFrame each
    log_pieces(session_dirs, name, ...) -> (session label, piece) of one log of every session
    session_labels(session_dirs) -> the ``session`` each directory's rows get
    python_lists(column) -> object array      # a set/vector column as lists, None for unset
    ARROW                                     # whether strings/vectors are Arrow-backed
    LogHeader(path, fields, types, separator, set_separator, empty_field,
              unset_field, open, close, format, meta)   # .schema
    LogFormatError(InputError)                # .filename, .lineno

The reader is a small package of modules, one job each (this module
re-exports their public names)::

    header.py    LogHeader, LogFormatError
    source.py    a file's bytes, plain or gzip, under the ReadLimits
    values.py    Zeek ASCII values -> Python values (escapes, sets, vectors)
    segments.py  a TSV log's header blocks and bodies; column-count checks
    records.py   read_log (TSV), jsonlog.py (JSON lines)
    columns.py   text columns -> typed pandas arrays (dtype_for, empty_frame)
    frames.py    read_dataframe, iter_frames
    sessions.py  load_logs, LoadedLogs, has_logs, log_pieces

Nothing here imports bcc: the analyzers and notebooks use it anywhere pandas
runs.

The header comes from the file itself (``#fields``/``#types``), so any Zeek
version's columns are read. JSON logs have no header: their types come from
``schema`` or the packaged schema named by the file (``dns.log`` -> dns);
keys the schema lacks are kept with their JSON values.

Values. ``read_log`` yields one dict per row with every header field, holding
the Python values the writer accepts: time/interval/double -> float seconds,
count/int/port -> int, bool -> bool, addr/subnet/string/enum -> str,
set/vector -> list, unset (``-``) -> None, ``(empty)`` -> "" or [].

``read_dataframe`` reads a TSV log ``chunk_bytes`` of text at a time, cut at
line ends, and converts each chunk's columns at once (pandas C parser with
quoting and comments off, then vectorized conversions), so neither the text
nor its parse is ever held whole; the frame does not depend on the chunk
size. Columns are typed from the header:

    time -> datetime64[ns, UTC] (rounded to the microsecond)
    interval -> timedelta64[ns]   count -> UInt64   int -> Int64
    port -> UInt16   double -> Float64   bool -> boolean
    addr/subnet/string/enum -> string (pandas StringDtype, <NA> for unset;
        Arrow storage, python storage for a column Arrow refuses: lone
        surrogates from errors="surrogateescape")
    set[...]/vector[...] -> Arrow list column (pd.ArrowDtype(pa.list_(T)):
        T string, double seconds for time/interval/double, int64, uint64 for
        count/port, bool), <NA> for unset, [] for (empty); python_lists(col)
        gives read_log's lists (None for unset)

Without pyarrow (``ARROW`` False) strings use python storage and vectors
are object columns of Python lists (None for unset), as before: the Arrow
forms hold a dns.log frame in about 70% of the memory (docs/benchmarks.md).

Strings: Zeek's ``\\xHH`` and ``\\\\`` escapes are decoded to bytes, then the
bytes are decoded as UTF-8 with ``errors``: "backslashreplace" (default) shows
an undecodable byte as the text ``\\xff`` (safe to print, like Zeek's JSON);
"surrogateescape" keeps the exact bytes (``s.encode("utf-8",
"surrogateescape")`` recovers them, and the writer accepts such strings).
JSON strings are kept as Zeek wrote them (its JSON ``\\xHH`` text is not
decoded: it cannot be told apart from a literal backslash).

Limits: every reader takes ``limits`` (``ReadLimits`` from ``.limits``:
line length, decompressed size, gzip ratio); a log over one raises
LogLimitError, an InputError naming the file and the limit, before it is
held in memory whole (a limit error later in the file wins over a format
error in an earlier chunk, as when the file was checked before parsing).

Errors: a line with the wrong number of columns, a value that is not valid for
its column's type, or a bad header raises LogFormatError naming the file and
the 1-based line number. No row is ever dropped silently. Lines starting with
``#`` are header/footer lines (Zeek writes a data line's leading ``#`` as
``\\x23``); a ``#`` inside a line is data. Concatenated logs (several
headers in one file) are read segment by segment; in a DataFrame the columns
are the union, in header order.
"""

from __future__ import annotations

from .columns import ARROW, STRING_DTYPE, dtype_for, empty_frame, python_lists
from .frames import iter_frames, read_dataframe
from .header import LogFormatError, LogHeader
from .records import read_log
from .sessions import LOG_NAMES, LoadedLogs, has_logs, load_logs, log_pieces, session_labels
from .values import unescape

__all__ = [
    "ARROW",
    "LOG_NAMES",
    "STRING_DTYPE",
    "LoadedLogs",
    "LogFormatError",
    "LogHeader",
    "dtype_for",
    "empty_frame",
    "has_logs",
    "iter_frames",
    "load_logs",
    "log_pieces",
    "python_lists",
    "read_dataframe",
    "read_log",
    "session_labels",
    "unescape",
]
