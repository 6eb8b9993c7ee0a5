"""capture_stats.log's row: what the kernel and the session counted, and what they lost.

Pure: the kernel's counters (bpf_program.stats()) and the session's in, the
row out. Zeek's capture_stats.log has the same purpose; the columns are
ours (zeek_schemas/capture_stats.tsv).
"""

from __future__ import annotations

import time

# Kernel stats summed into ringbuf_drops: one per event kind.
RINGBUF_DROP_STATS = ("rb_drop_conn", "rb_drop_dns", "rb_drop_weird", "rb_drop_blocked", "rb_drop_process",
                      "rb_drop_fragment", "rb_drop_tunnel")
# Blocking-mode kernel stats the log carries under the same names.
BLOCKING_STATS = ("blocked_connects", "blocked_packets", "blocked_dns", "addrs_learnt", "allow_table_full")


def capture_stats_row(kernel_stats: dict, counters, fragments_lost: int, source: str, duration: float) -> dict:
    """counters: the session's SessionCounters."""
    c = counters
    row = {
        "ts": time.time(),
        "source": source,
        "duration": duration,
        # A reassembled datagram's fragments were counted as they passed; the datagram is not counted again.
        "packets": kernel_stats.get("packets", 0) + c.conn_packets - c.datagrams_run,
        "ip_bytes": kernel_stats.get("ip_bytes", 0) + c.conn_ip_bytes - c.datagram_ip_bytes,
        "connections": c.connections,
        "dns_messages": c.dns_messages,
        "dns_rows": c.dns_rows,
        "ringbuf_drops": sum(kernel_stats.get(name, 0) for name in RINGBUF_DROP_STATS),
        "conn_table_full": kernel_stats.get("conn_table_full", 0),
        "parse_errors": kernel_stats.get("parse_errors", 0) + c.bad_events,
        "dns_parse_errors": c.dns_parse_errors,
        "weirds": c.weirds + kernel_stats.get("weirds_suppressed", 0),
        "fragments": kernel_stats.get("fragments", 0) + kernel_stats.get("rb_drop_fragment", 0),
        "fragments_lost": fragments_lost + kernel_stats.get("rb_drop_fragment", 0),
    }
    row.update({name: kernel_stats.get(name, 0) for name in BLOCKING_STATS})
    return row
