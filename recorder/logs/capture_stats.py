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

    def kernel(stat: Stat) -> int:
        return kernel_stats.get(stat_key(stat), 0)

    row = {
        "ts": time.time(),
        "source": source,
        "duration": duration,
        # A reassembled datagram's fragments were counted as they passed; the datagram is not counted again.
        "packets": kernel(Stat.PACKETS) + c.conn_packets - c.datagrams_run,
        "ip_bytes": kernel(Stat.IP_BYTES) + c.conn_ip_bytes - c.datagram_ip_bytes,
        "non_ip_frames": kernel(Stat.NON_IP) + c.non_ip_frames,
        "connections": c.connections,
        "dns_messages": c.dns_messages,
        "dns_rows": c.dns_rows,
        "ringbuf_drops": sum(kernel_stats.get(name, 0) for name in RINGBUF_DROP_STATS),
        "conn_table_full": kernel(Stat.CONN_TABLE_FULL),
        "parse_errors": kernel(Stat.PARSE_ERRORS) + c.bad_events,
        "dns_parse_errors": c.dns_parse_errors,
        "weirds": c.weirds + kernel(Stat.WEIRDS_SUPPRESSED),
        "fragments": kernel(Stat.FRAGMENTS) + kernel(Stat.RB_DROP_FRAGMENT),
        "fragments_lost": fragments_lost + kernel(Stat.RB_DROP_FRAGMENT),
        "tcp_holes_merged": kernel(Stat.TCP_HOLES_MERGED),
    }
    row.update({name: kernel_stats.get(name, 0) for name in BLOCKING_STATS})
    return row
