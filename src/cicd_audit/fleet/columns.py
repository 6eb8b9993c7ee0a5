"""Zeek columns <-> Arrow columns, with the Zeek type kept in the Parquet schema.

API::

    zeek_types(frame, log_name) -> {column: zeek type}
    to_arrow(frame, zeek_types) -> pyarrow.Table        # each field's metadata: {"zeek_type": ...}
    to_frame(table) -> DataFrame                        # the dtypes load_logs gives (reader.dtype_for:
                                                        # lists as Arrow lists when pyarrow is there)

Mapping (the Zeek type is also written to the field's metadata, so a reader
tells an ``addr`` from a ``string`` and a ``port`` from a ``count``)::

    time -> timestamp[ns, UTC]   interval -> duration[ns]   count -> uint64
    int -> int64   port -> uint16   double -> float64   bool -> bool
    addr/subnet/string/enum/... -> string
    set[T]/vector[T] -> list<T'>: T' float64 for time/interval/double (seconds,
        as read_log gives them), int64 for int, uint64 for count/port, bool,
        else string; unset stays null, (empty) stays an empty list.

Columns that the packaged schema does not name (extensions such as
``proc.pid``) get their Zeek type from their pandas dtype.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from ..zeeklog.reader import dtype_for
from ..zeeklog.schema import SchemaError, load_schema, parse_type

ZEEK_TYPE_KEY = b"zeek_type"

_ATOM = {
    "time": pa.timestamp("ns", tz="UTC"),
    "interval": pa.duration("ns"),
    "count": pa.uint64(),
    "int": pa.int64(),
    "port": pa.uint16(),
    "double": pa.float64(),
    "bool": pa.bool_(),
}
_ELEMENT = {"time": pa.float64(), "interval": pa.float64(), "double": pa.float64(), "int": pa.int64(),
            "count": pa.uint64(), "port": pa.uint64(), "bool": pa.bool_()}


def arrow_type(ztype: str) -> pa.DataType:
    container, element = parse_type(ztype)
    if container is not None:
        return pa.list_(_ELEMENT.get(element, pa.string()))
    return _ATOM.get(element, pa.string())


def _type_from_dtype(s: pd.Series) -> str:
    dt = s.dtype
    if isinstance(dt, pd.DatetimeTZDtype) or np.issubdtype(getattr(dt, "type", object), np.datetime64):
        return "time"
    if np.issubdtype(getattr(dt, "type", object), np.timedelta64):
        return "interval"
    named = {"UInt64": "count", "Int64": "int", "UInt16": "port", "Float64": "double", "boolean": "bool"}
    if str(dt) in named:
        return named[str(dt)]
    if isinstance(dt, getattr(pd, "ArrowDtype", ())) and pa.types.is_list(dt.pyarrow_dtype):
        floats = pa.types.is_floating(dt.pyarrow_dtype.value_type)
        return "vector[double]" if floats else "vector[string]"
    if isinstance(dt, np.dtype) and dt.kind == "O":
        first = next((v for v in s if isinstance(v, list) and v), None)
        if first is not None and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in first):
            return "vector[double]"
        if s.map(lambda v: isinstance(v, list) or v is None).all() and s.notna().any():
            return "vector[string]"
    return "string"


def zeek_types(frame: pd.DataFrame, log_name: str) -> dict:
    """{column: Zeek type}: the packaged schema's for its columns, else inferred from the dtype."""
    try:
        known = {f.name: f.type for f in load_schema(log_name).fields}
    except SchemaError:
        known = {}
    return {c: known.get(c) or _type_from_dtype(frame[c]) for c in frame.columns}


def arrow_schema(types: dict) -> pa.Schema:
    return pa.schema([pa.field(c, arrow_type(t), metadata={ZEEK_TYPE_KEY: t.encode()}) for c, t in types.items()])


def _list_array(s: pd.Series, type_: pa.DataType) -> pa.Array:
    """A set/vector column (Python lists, None for unset, as load_logs holds them) as an Arrow list array.

    pyarrow walks the object array in C++; only a column it refuses (an element of another
    type) goes through the per-row normalisation, which then raises the same error with its value.
    """
    values = s.to_numpy(dtype=object)
    try:
        return pa.array(values, type=type_, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        rows = [None if v is None or (not isinstance(v, (list, tuple, np.ndarray)) and pd.isna(v)) else list(v)
                for v in values]
        return pa.array(rows, type=type_, from_pandas=True)


def _arrow_column(s: pd.Series, ztype: str, arrow: pa.DataType):
    if isinstance(s.dtype, getattr(pd, "ArrowDtype", ())):  # load_logs' lists: already Arrow, no Python objects
        arr = pa.array(s.array)
        return (arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr).cast(arrow)
    if parse_type(ztype)[0] is not None:
        return _list_array(s, arrow)
    return pa.array(s, type=arrow, from_pandas=True)


def to_arrow(frame: pd.DataFrame, types: dict) -> pa.Table:
    """An Arrow table of ``frame`` whose fields carry their Zeek types."""
    schema = arrow_schema(types)
    # a frame from the reader carries its LogHeader in attrs, which pandas deep-copies into every
    # column it hands out: a shallow copy without attrs makes that copy once, not once per column
    frame = frame.copy(deep=False)
    frame.attrs = {}
    arrays = [_arrow_column(frame[f.name], types[f.name], f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def field_zeek_type(field: pa.Field) -> str | None:
    md = field.metadata or {}
    t = md.get(ZEEK_TYPE_KEY)
    return t.decode() if t else None


def to_frame(table: pa.Table) -> pd.DataFrame:
    """A DataFrame with the dtypes ``load_logs`` gives for each stored column's Zeek type.

    Columns without a Zeek type (partition keys such as ``date``) keep Arrow's pandas conversion.
    """
    cols = {}
    for field, col in zip(table.schema, table.columns):
        ztype = field_zeek_type(field)
        if ztype is None:
            cols[field.name] = col.to_pandas()
            continue
        container, _ = parse_type(ztype)
        if container is not None:
            dtype = dtype_for(ztype)  # an Arrow list, as load_logs holds it (object lists without pyarrow's dtype)
            if isinstance(dtype, pd.ArrowDtype):
                cols[field.name] = pd.Series(dtype.construct_array_type()(col.cast(dtype.pyarrow_dtype)))
            else:
                cols[field.name] = pd.Series(col.to_pylist(), dtype=object)
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            # straight from Arrow, not through a Python string per value
            cols[field.name] = pd.Series(pd.array(col.combine_chunks(), dtype=dtype_for(ztype)))
        else:
            cols[field.name] = pd.Series(col.to_pandas(types_mapper=_extension_dtype)).astype(dtype_for(ztype))
    return pd.DataFrame(cols, index=pd.RangeIndex(table.num_rows))


def _extension_dtype(t: pa.DataType):
    return {pa.uint64(): pd.UInt64Dtype(), pa.int64(): pd.Int64Dtype(), pa.uint16(): pd.UInt16Dtype(),
            pa.float64(): pd.Float64Dtype(), pa.bool_(): pd.BooleanDtype()}.get(t)
