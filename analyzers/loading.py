"""Session directories loaded for ``analyze``: every log as a frame except dns.log, which is
read chunk by chunk straight into its ``DnsIndex``, so that memory follows what the
analyzers keep (codes and numbers per query, each distinct name once), not the log's size.

    logs = load_for_analysis("session/", "other-session/")
    analysis.analyze(logs)          # the same result as analyze(load_logs(...))
"""

from __future__ import annotations

from dataclasses import dataclass

from ..zeeklog.allocator import map_large_blocks, release_free_memory
from ..zeeklog.limits import ReadLimits
from ..zeeklog.reader import LoadedLogs, load_logs, log_pieces, session_labels
from ..zeeklog.source import CHUNK_BYTES
from .dnsindex import INDEX_COLUMNS, DnsIndex, IndexBuilder
from .processes import proc_uid_index


@dataclass
class IndexedLogs(LoadedLogs):
    """``LoadedLogs`` whose ``dns`` frame is left empty: what the analyzers read of dns.log is
    in ``dns_index``."""

    dns_index: DnsIndex


def load_for_analysis(*session_dirs, limits: ReadLimits | None = None, chunk_bytes: int = CHUNK_BYTES) -> IndexedLogs:
    """conn.log first (the DNS rows point at its processes), then dns.log into its index."""
    map_large_blocks()  # the analysis frees big per-row arrays all along: their pages go back at once
    logs = load_logs(*session_dirs, limits=limits, skip=("dns",))
    builder = IndexBuilder(proc_uid_index(logs.conn))
    several = len(session_dirs) > 1
    for label, piece in log_pieces(session_dirs, "dns", limits=limits, chunk_bytes=chunk_bytes,
                                   columns=INDEX_COLUMNS):
        builder.add(piece, session=label if several else "")
        del piece
        release_free_memory()  # the piece and its reduction's temporaries: pages back before the next
    if several:
        builder.session_labels(session_labels(session_dirs))
    index = builder.finish()
    release_free_memory()
    return IndexedLogs(conn=logs.conn, dns=logs.dns, weird=logs.weird, capture_stats=logs.capture_stats,
                       notice=logs.notice, dns_index=index)
