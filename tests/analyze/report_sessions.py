"""Sessions for the report tests: a CI job recorded with processes and blocking mode.

``blocked_job(session_builder, directory, hostile=False)`` writes conn.log
(with ``proc.*`` and ``blocked``), dns.log and notice.log the way the recorder
does in blocking mode: the ordinary job's rows belong to ``make`` in step
``build``; ``curl`` tries an address outside the policy ``CURL_TRIES`` times and
is refused each time (a conn.log row marked blocked and a notice row each),
and two lookups are refused for their name (notice rows only). With
``hostile``, the blocked process, its step and the names it looks up carry
markup and bidi characters, the way an attacker would name them.
"""

from __future__ import annotations

from pathlib import Path

BUILD = {"proc.pid": 1000, "proc.name": "make", "proc.exe": "/usr/bin/make", "proc.step": "build"}
CURL = {"proc.pid": 77, "proc.name": "curl", "proc.exe": "/usr/bin/curl", "proc.step": "deploy"}
BLOCKED_ADDRESS = "203.0.113.9"
CURL_TRIES = 4
REFUSED_NAMES = ("collector.exfil.test", "collector.exfil.test")

#: What an attacker names a process, a step and a host to attack the page that shows them.
HOSTILE_PROCESS = "<script>document.title='pwned'</script>"
HOSTILE_STEP = "\"><img src=x onerror=\"document.title='pwned-img'\">"
HOSTILE_NAMES = ("javascript-alert.x\u202egnp.evil.test", "<svg onload=alert(1)>.evil.test", "a'\"><b>bold.evil.test")


def blocked_job(session_builder, directory: Path, hostile: bool = False) -> Path:
    from cicd_audit.zeeklog.schema import load_schema
    from cicd_audit.zeeklog.writer import LogWriter

    b = session_builder["ordinary_ci"](session_builder["SessionBuilder"](seed=5))
    curl = dict(CURL, **({"proc.name": HOSTILE_PROCESS, "proc.step": HOSTILE_STEP} if hostile else {}))
    first_curl = b._uid
    if hostile:
        for name in HOSTILE_NAMES:  # looked up and connected to: the names reach the destination table
            b.lookup(name, "A", answers=["192.0.2.77"])
            b.connect("192.0.2.77", 443, orig_bytes=700, resp_bytes=900)
    t_blocked = []
    for _ in range(CURL_TRIES):
        t = b.tick(2.0)
        t_blocked.append(t)
        b.conn.append({"ts": t, "uid": b.uid(), "id.orig_h": b.client, "id.orig_p": 40000 + len(t_blocked),
                       "id.resp_h": BLOCKED_ADDRESS, "id.resp_p": 443, "proto": "tcp", "conn_state": "OTH",
                       "local_orig": True, "local_resp": False, "missed_bytes": 0, "history": "",
                       "orig_pkts": 0, "orig_ip_bytes": 0, "resp_pkts": 0, "resp_ip_bytes": 0, "ip_proto": 6})
    curl_uids = {"C%017d" % u for u in range(first_curl + 1, b._uid + 1)}
    blocked_uids = {r["uid"] for r in b.conn if r["id.resp_h"] == BLOCKED_ADDRESS}
    for r in b.conn:
        r.update(curl if r["uid"] in curl_uids else BUILD)
        r["blocked"] = r["uid"] in blocked_uids
    directory.mkdir(parents=True, exist_ok=True)
    with LogWriter(directory, load_schema("dns"), fmt="tsv", flush_interval=0, open_time=b.t) as w:
        for r in sorted(b.dns, key=lambda r: r["ts"]):
            w.write(r)
    conn_schema = load_schema("conn").extended(load_schema("conn_process")).extended(load_schema("conn_blocked"))
    with LogWriter(directory, conn_schema, fmt="tsv", flush_interval=0, open_time=b.t) as w:
        for r in sorted(b.conn, key=lambda r: r["ts"]):
            w.write(r)
    notices = [{"ts": r["ts"], "uid": r["uid"], "id.orig_h": b.client, "id.orig_p": r["id.orig_p"],
                "id.resp_h": BLOCKED_ADDRESS, "id.resp_p": 443, "proto": "tcp", "note": "CicdAudit::Blocked_Connection",
                "msg": "curl tried to connect to 203.0.113.9:443/tcp: not allowed by the policy", **curl}
               for r in b.conn if r["uid"] in blocked_uids]
    for name in REFUSED_NAMES:
        notices.append({"ts": b.tick(1.0), "id.orig_h": b.client, "id.orig_p": 53000, "id.resp_h": b.resolver,
                        "id.resp_p": 53, "proto": "udp", "note": "CicdAudit::Blocked_DNS_Query",
                        "msg": f"curl queried {name}: name not in the policy", "sub": name, **curl})
    notice_schema = load_schema("notice").extended(load_schema("notice_process"))
    with LogWriter(directory, notice_schema, fmt="tsv", flush_interval=0, open_time=b.t) as w:
        for r in notices:
            w.write(r)
    return Path(directory)
