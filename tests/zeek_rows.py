"""A Zeek TSV log's rows with their uids masked, for comparing two recordings.

uids are random, so two recordings of one capture differ in them and only in
them. The columns that hold them are found by name in the `#fields` header
(`uid`, and `tunnel_parents`, a set of uids), and each uid in them reads
"uid": whether a row has one, and how many, is still compared. Recognising a
uid by its look instead fails now and then: one with short base-62 halves is
as short as 14 characters. The rows come sorted: connections ending in the
same sweep come out in either order.
"""

from __future__ import annotations

from pathlib import Path

UID_COLUMNS = frozenset({"uid", "tunnel_parents"})
UNSET = ("-", "(empty)")           # Zeek's unset field and empty set: no uid to mask


def rows_uids_masked(log: Path) -> list[str]:
    lines = log.read_text(errors="surrogateescape").splitlines()
    names = next((line.split("\t")[1:] for line in lines if line.startswith("#fields\t")), None)
    if names is None:
        raise AssertionError(f"{log}: no #fields header")
    masked = {i for i, name in enumerate(names) if name in UID_COLUMNS}
    rows = []
    for line in lines:
        if not line.startswith("#"):
            values = line.split("\t")
            rows.append("\t".join(_mask(value) if i in masked else value for i, value in enumerate(values)))
    return sorted(rows)


def _mask(value: str) -> str:
    return value if value in UNSET else ",".join("uid" for _ in value.split(","))
