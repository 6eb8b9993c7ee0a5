"""``icmp_payload``: data carried in ICMP echo or in IP protocols other than TCP/UDP/ICMP.

ICMP tunnels (ptunnel, icmpsh, icmp-exfil one-liners) put their data in echo
payloads; ping sends 56 bytes (iputils, macOS) or 32 (Windows) per packet,
and path-MTU discovery uses ICMP errors, which are not echoes (they are
``destinations.icmp_control`` and never reach this analyzer). A few large
echoes (``ping -s 1472`` to test an MTU) are normal; kilobytes of oversized
payload are not. Other IP protocols (GRE, ESP, SCTP, raw sockets: Zeek's
``unknown_transport``) have no place in a CI job's egress.

Input: conn.log. Zeek counts ICMP payload bytes (after the 8-byte header) in
``orig_bytes``/``resp_bytes``. Output: one finding per (session, address).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .destinations import icmp_control, not_a_destination
from .dnsindex import canon_ip, session_labels
from .findings import human_bytes, make_findings

ANALYZER = "icmp_payload"

#: Largest echo payload ordinary ping sends per packet (iputils default 56;
#: 64 leaves room for a timestamp option).
PING_PAYLOAD = 64

#: Oversized echo payload a job may send (an MTU test: a handful of 1472-byte
#: pings) before it is data: medium above, high at ``ICMP_HIGH_BYTES``.
ICMP_MEDIUM_BYTES = 8_192
ICMP_HIGH_BYTES = 65_536

#: Bytes in other IP protocols that make a finding high (medium below).
OTHER_HIGH_BYTES = 65_536


def icmp_payloads(conn):
    if conn is None or conn.empty or "proto" not in conn.columns:
        return make_findings([])
    proto = conn["proto"].to_numpy(dtype=object, na_value="")
    m = (proto != "tcp") & (proto != "udp")
    if not m.any():
        return make_findings([])
    c = conn[m]
    n = len(c)
    get = lambda col, d=0.0: c[col].to_numpy(dtype="float64", na_value=d) if col in c.columns else np.full(n, d)  # noqa: E731
    df = pd.DataFrame({
        "session": session_labels(c),
        "address": [canon_ip(a) or a for a in c["id.resp_h"].to_numpy(dtype=object, na_value=None)],
        "proto": proto[m], "type": get("id.orig_p", np.nan),
        "ob": get("orig_bytes"), "rb": get("resp_bytes"), "op": get("orig_pkts"), "rp": get("resp_pkts"),
    })
    # Boolean arrays, not lists: an empty list would select no columns instead of no rows.
    df = df.loc[np.array([not not_a_destination(a) for a in df["address"]], dtype=bool)]
    df = df.loc[np.array([not icmp_control(p, t, a) for p, t, a in zip(df["proto"], df["type"], df["address"])],
                         dtype=bool)]
    if df.empty:
        return make_findings([])
    recs = []
    for (sess, addr, pr), g in df.groupby(["session", "address", "proto"], sort=True):
        ob, rb = float(g["ob"].sum()), float(g["rb"].sum())
        pk = float(g["op"].sum())
        per_pkt = ob / pk if pk else ob
        if pr == "icmp":
            if ob < ICMP_MEDIUM_BYTES or per_pkt <= PING_PAYLOAD:
                continue
            sev = "high" if ob >= ICMP_HIGH_BYTES else "medium"
            what = (f"{human_bytes(ob)} of ICMP echo payload to {addr} in {int(pk)} packets "
                    f"({per_pkt:.0f} B each; ping sends {PING_PAYLOAD} or less)")
        else:
            if ob + rb <= 0:
                continue
            sev = "high" if ob >= OTHER_HIGH_BYTES else "medium"
            what = f"{human_bytes(ob)} sent to {addr} over IP protocol {pr!s} (not TCP, UDP or ICMP)"
        recs.append({
            "analyzer": ANALYZER, "severity": sev, "indicator": addr, "summary": what,
            "evidence": {"address": addr, "proto": pr, "connections": int(len(g)), "orig_bytes": int(ob),
                         "resp_bytes": int(rb), "orig_pkts": int(pk), "bytes_per_packet": round(per_pkt, 1)},
            "sessions": [sess] if sess else [],
        })
    return make_findings(recs)
