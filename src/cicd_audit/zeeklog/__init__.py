"""Zeek logs: schemas, an exact Zeek ASCII/JSON writer, and a fast reader.

Modules (import what you need; the writer does not import pandas):

* ``cicd_audit.zeeklog.schema`` -- ``Field``, ``Schema`` (``.names``,
  ``.types``, ``.extended()``), ``load_schema("conn")`` from zeek_schemas/.
* ``cicd_audit.zeeklog.writer`` -- ``LogWriter(directory, schema,
  fmt="tsv"|"json", open_time=None)`` with ``write(record)`` and
  ``close(close_time=None)``; output is byte-identical to Zeek 9.1's.
* ``cicd_audit.zeeklog.reader`` -- ``read_log(path)`` -> (LogHeader,
  records), ``read_dataframe(path)``, ``load_logs(*session_dirs)`` ->
  ``LoadedLogs(conn, dns, weird, capture_stats, notice)``, ``LogFormatError``,
  ``python_lists(column)`` (a set/vector column, Arrow-backed when pyarrow is
  installed, as Python lists).
  Never imports bcc. It is the public face of the reader's parts, in the
  order data flows: ``source`` (bytes, gzip, the limits), ``header`` (the
  ``#`` lines), ``segments`` (header blocks and their bodies), ``values``
  (fields to Python values), ``records`` (rows), ``jsonlog`` (JSON lines),
  ``columns`` (dtypes), ``frames`` (chunked TSV to typed DataFrames) and
  ``sessions`` (a session directory's logs, rotated files included).
* ``LogWriter.rotate(rename)`` ends a file as Zeek's rotation does (agent's
  ``--rotate-interval``/``--rotate-size``).
* ``cicd_audit.zeeklog.limits`` -- ``ReadLimits`` (line length,
  decompressed size, gzip ratio) the reader enforces, ``LogLimitError``.

See docs/log-format.md for the format rules and the dtypes.
"""
