"""capture_stats.log's row: what the kernel and the session counted, and what they lost.

Pure: the kernel's counters (bpf_program.stats()) and the session's in, the
row out. Zeek's capture_stats.log has the same purpose; the columns are
ours (zeek_schemas/capture_stats.tsv).
"""

from __future__ import annotations

import time

from cicd_audit.recorder.kernel.abi import Stat, stat_key

# Kernel stats summed into ringbuf_drops: one per event kind.
RINGBUF_DROP_STATS = tuple(stat_key(s) for s in (Stat.RB_DROP_CONN, Stat.RB_DROP_DNS, Stat.RB_DROP_WEIRD,
                                                 Stat.RB_DROP_BLOCKED, Stat.RB_DROP_PROCESS, Stat.RB_DROP_FRAGMENT,
                                                 Stat.RB_DROP_TUNNEL))
# Blocking-mode kernel stats the log carries under the same names.
BLOCKING_STATS = tuple(stat_key(s) for s in (Stat.BLOCKED_CONNECTS, Stat.BLOCKED_PACKETS, Stat.BLOCKED_DNS,
                                             Stat.ADDRS_LEARNT, Stat.ALLOW_TABLE_FULL))


def capture_stats_row(kernel_stats: dict, counters, fragments_lost: int, source: str, duration: float) -> dict:
    """counters: the session's SessionCounters."""
    c = counters
    row = {
        "ts": time.time(),
        "source": source,
        "duration": duration,
        # A reassembled datagram's fragments were counted as they passed; the datagram is not counted again.
        "packets": kernel_stats.get(stat_key(Stat.PACKETS), 0) + c.conn_packets - c.datagrams_run,
        "ip_bytes": kernel_stats.get(stat_key(Stat.IP_BYTES), 0) + c.conn_ip_bytes - c.datagram_ip_bytes,
        "connections": c.connections,
        "dns_messages": c.dns_messages,
        "dns_rows": c.dns_rows,
        "ringbuf_drops": sum(kernel_stats.get(name, 0) for name in RINGBUF_DROP_STATS),
        "conn_table_full": kernel_stats.get(stat_key(Stat.CONN_TABLE_FULL), 0),
        "parse_errors": kernel_stats.get(stat_key(Stat.PARSE_ERRORS), 0) + c.bad_events,
        "dns_parse_errors": c.dns_parse_errors,
        "weirds": c.weirds + kernel_stats.get(stat_key(Stat.WEIRDS_SUPPRESSED), 0),
        "fragments": kernel_stats.get(stat_key(Stat.FRAGMENTS), 0) + kernel_stats.get(stat_key(Stat.RB_DROP_FRAGMENT), 0),
        "fragments_lost": fragments_lost + kernel_stats.get(stat_key(Stat.RB_DROP_FRAGMENT), 0),
    }
    row.update({name: kernel_stats.get(name, 0) for name in BLOCKING_STATS})
    return row
