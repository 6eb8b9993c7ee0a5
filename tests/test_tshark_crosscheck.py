"""A second, independent check of dns.log: Wireshark's DNS dissector.

Every shared pcap (the Zeek oracle traces and ../shared/dns-tunnel-data/pcaps)
is recorded with `cicd-audit record --pcap` (with the options
scripts/conformance.py derives from the oracle's meta.json; -C for the
dns2tcp_netrack capture, whose checksums were offloaded) and dissected with
tshark through pyshark. Each dns.log row must have a DNS message in tshark's
dissection with the same transaction id, endpoints and query name:

* a row with an rcode (a reply was seen): a reply with the same qtype and
  rcode, and, when every answer-section record is of a type both tools show
  the same way (A, AAAA, NS, CNAME, PTR, MX, SRV, TXT, SOA), the same answers
  in the same order, rendered as Zeek renders them;
* a row without an rcode: a query with the same qtype.

Differences between Zeek and Wireshark that are not bugs are listed in
KNOWN_DIFFERENCES with the reason, and documented in docs/conformance.md.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from shared_data import shared

from cicd_audit.zeeklog.reader import read_log

REPO = Path(__file__).resolve().parents[1]
TUNNELS = shared("dns-tunnel-data", "pcaps")
CLI = str(Path(sys.executable).with_name("cicd-audit"))

_spec = importlib.util.spec_from_file_location("cicd_audit_conformance", REPO / "scripts" / "conformance.py")
conformance = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = conformance
_spec.loader.exec_module(conformance)

pytestmark = [pytest.mark.root, pytest.mark.slow]

# capture name -> why some rows are not comparable (checked: these rows must differ).
KNOWN_DIFFERENCES: dict[str, str] = {}


def _captures() -> list[tuple[str, Path, list[str]]]:
    caps = []
    for case in conformance.list_cases():
        options = (["-C"] if "-C" in case.flags else []) + conformance.zeek_configuration(case)
        caps.append((case.name, case.dir / "trace.pcap", options))
    for pcap in sorted(TUNNELS.glob("*/*.pcap")):
        caps.append((f"tunnel/{pcap.parent.name}", pcap, ["-C"] if pcap.parent.name == "dns2tcp_netrack" else []))
    return caps


CAPTURES = _captures()


def test_captures_are_present():
    assert len(CAPTURES) == 38 + 7, [c[0] for c in CAPTURES]


# -- tshark's side ----------------------------------------------------------------

def _as_list(v):
    return v if isinstance(v, list) else [v]


def _txt_strings(rr: dict) -> list[str]:
    return [str(s) for s in _as_list(rr.get("dns.txt", []))]


def _zeek_answer(rr: dict) -> str | None:
    """The answers entry Zeek writes for one answer RR, or None if tshark's
    fields do not give it (types rendered differently, or not at all)."""
    rtype = int(rr["dns.resp.type"])
    field = {1: "dns.a", 28: "dns.aaaa", 2: "dns.ns", 5: "dns.cname", 12: "dns.ptr.domain_name",
             15: "dns.mx.mail_exchange", 33: "dns.srv.target", 6: "dns.soa.mname"}.get(rtype)
    if field:
        return str(rr[field]) if field in rr else None
    if rtype == 16:
        return " ".join(f"TXT {len(s.encode('utf-8', 'surrogateescape'))} {s}" for s in _txt_strings(rr))
    return None


def _owner(rr: dict, field: str) -> str:
    """An RR's owner name; Wireshark splits an SRV owner into service, proto and name."""
    if field in rr:
        return str(rr[field])
    if "dns.srv.service" in rr:
        return ".".join(str(rr[k]) for k in ("dns.srv.service", "dns.srv.proto", "dns.srv.name") if k in rr)
    return ""


def _records(section) -> list[dict]:
    out = []
    for value in _as_list(section or []):
        if isinstance(value, dict):
            for rr in value.values():
                out.extend(rr if isinstance(rr, list) else [rr])
    return out


LAYERS = {"dns": "dns", "mdns": "dns", "llmnr": "dns", "nbns": "nbns"}   # Wireshark layer -> field prefix


def _file_capture(*args, **kwargs):
    """pyshark's FileCapture, made to let tshark exit by itself at the end of the file.

    At end of file pyshark kills tshark if asyncio has not yet noted its exit.
    If tshark exits in between, the kill's Popen.poll() reaps it first, so the
    child watcher pyshark installs (SafeChildWatcher) finds no child and reports
    exit status 255, which pyshark then raises as a tshark crash (seen once in CI
    on the sods capture). Waiting for the exit a finished tshark is making
    anyway leaves the reaping to the watcher alone; a real crash still raises.
    """
    import asyncio

    import pyshark

    class FileCapture(pyshark.FileCapture):
        async def _cleanup_subprocess(self, process):
            if self._eof_reached and process.returncode is None:
                await asyncio.wait_for(process.wait(), 60)
            await super()._cleanup_subprocess(process)

    return FileCapture(*args, **kwargs)


def dissect(pcap: Path) -> list[dict]:
    """Every DNS message tshark finds (DNS, mDNS, LLMNR and NetBIOS name
    service, which Wireshark dissects as protocols of their own): endpoints,
    id, flags, question and answer names and types, answers."""
    cap = _file_capture(str(pcap), display_filter=" or ".join(LAYERS), use_json=True, keep_packets=False)
    messages = []
    try:
        for pkt in cap:
            for layer in pkt.layers:
                prefix = LAYERS.get(layer.layer_name)
                if prefix is None:
                    continue
                f = layer._all_fields
                flags = f.get(f"{prefix}.flags_tree", {})
                # An UPDATE's zone, prerequisites and updates stand where a query's
                # question and answers do.
                queries = _records(f.get("Queries")) + _records(f.get("Zone"))
                answers = _records(f.get("Answers"))
                others = _records(f.get("Prerequisites")) + _records(f.get("Updates"))
                net = pkt.ipv6 if hasattr(pkt, "ipv6") else pkt.ip
                tl = pkt.tcp if hasattr(pkt, "tcp") else pkt.udp
                src = (str(net.src), int(tl.srcport))
                dst = (str(net.dst), int(tl.dstport))
                qname, qtype = (f"{prefix}.qry.name", f"{prefix}.qry.type") if prefix == "dns" else \
                    ("nbns.name", "nbns.type")
                aname, atype = ("dns.resp.name", "dns.resp.type") if prefix == "dns" else ("nbns.name", "nbns.type")
                messages.append({
                    "ends": frozenset((src, dst)),
                    "id": int(str(f[f"{prefix}.id"]), 16),
                    "response": flags.get(f"{prefix}.flags.response") == "1",
                    "opcode": int(flags.get(f"{prefix}.flags.opcode", 0)),
                    "rcode": int(flags.get(f"{prefix}.flags.rcode", 0)),
                    # Zeek logs a row per question; a reply without one takes its name from an answer.
                    "names": {_norm(q.get(qname, "")) for q in queries} | {_norm(_owner(a, aname))
                                                                          for a in answers + others},
                    "qtypes": {int(q[qtype]) for q in queries if qtype in q} | {int(a[atype]) for a in answers
                                                                                if atype in a},
                    # NetBIOS answers are compared by count only (Zeek logs the addresses, Wireshark
                    # shows them per name flag).
                    "answers": [_zeek_answer(rr) if prefix == "dns" else None for rr in answers],
                })
    finally:
        cap.close()
    return messages


# -- the check ----------------------------------------------------------------------

def _norm(name) -> str:
    """A name as both tools can be compared on: Zeek lower-cases names (DNS.cc
    ExtractName) and Wireshark keeps the case; Wireshark shows NetBIOS names
    with their <suffix> and padding, Zeek decodes them without; the root is
    "<Root>" in Wireshark and empty in Zeek."""
    name = str(name or "")
    if name == "<Root>":
        return ""
    name = re.sub(r"\s*<[0-9a-fA-F]{2}>$", "", name)
    return name.rstrip(".").strip().lower()


def _zeek_text(name) -> str:
    """A dns.log name as Wireshark shows it: bytes that are not UTF-8 become U+FFFD."""
    raw = re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), str(name or ""))
    try:
        raw = raw.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        pass
    return _norm(raw)


def _same_name(row_name, names) -> bool:
    mine = _zeek_text(row_name)
    if any(ord(ch) > 127 for ch in mine):
        return True            # tshark shows undecodable bytes lossily; matched by id and endpoints only
    return mine in names


def disagreements(rows: list[dict], messages: list[dict]) -> list[str]:
    problems = []
    for row in rows:
        ends = frozenset(((row["id.orig_h"], row["id.orig_p"]), (row["id.resp_h"], row["id.resp_p"])))
        want_reply = row["rcode"] is not None
        cands = [m for m in messages if m["ends"] == ends and m["id"] == row["trans_id"]
                 and m["response"] == want_reply and (row["query"] is None or _same_name(row["query"], m["names"]))]
        what = f"{row['query']} id={row['trans_id']} {row['id.orig_h']}:{row['id.orig_p']}"
        if not cands:
            problems.append(f"{what}: no {'reply' if want_reply else 'query'} with this id/endpoints/name in tshark")
            continue
        diffs = []
        for m in cands:
            d = []
            if row["qtype"] is not None and row["qtype"] not in m["qtypes"]:
                d.append(f"qtype {row['qtype']} vs tshark {sorted(m['qtypes'])}")
            if want_reply and m["rcode"] != row["rcode"]:
                d.append(f"rcode {row['rcode']} vs tshark {m['rcode']}")
            if want_reply and m["opcode"] == 0 and None not in m["answers"]:
                mine = [_zeek_text(a) for a in row["answers"] or []]
                theirs = [a for a in (_norm(a) for a in m["answers"]) if a]     # Zeek drops empty ones
                if mine != theirs:
                    d.append(f"answers {mine} vs tshark {m['answers']}")
            if not d:
                break
            diffs.append("; ".join(d))
        else:
            problems.append(f"{what}: {diffs[0]}")
    return problems


@pytest.mark.parametrize("name, pcap, options", CAPTURES, ids=[c[0] for c in CAPTURES])
def test_dns_log_agrees_with_tshark(tmp_path, name, pcap, options):
    r = subprocess.run([CLI, "record", "--pcap", str(pcap), "--out", str(tmp_path), "--no-progress", *options],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = list(read_log(tmp_path / "dns.log")[1]) if (tmp_path / "dns.log").exists() else []
    problems = disagreements(rows, dissect(pcap))
    if name in KNOWN_DIFFERENCES:
        assert problems, f"{name} no longer differs from tshark: drop it from KNOWN_DIFFERENCES"
        return
    assert not problems, "\n".join(problems[:20])


def test_the_check_finds_a_wrong_answer_qtype_and_rcode(tmp_path):
    """The comparison is not vacuous: on the wikipedia trace it compares
    answers, and a changed answer, qtype or rcode is reported."""
    pcap = conformance.ORACLE / "wikipedia" / "trace.pcap"
    r = subprocess.run([CLI, "record", "--pcap", str(pcap), "--out", str(tmp_path), "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = list(read_log(tmp_path / "dns.log")[1])
    messages = dissect(pcap)
    assert not disagreements(rows, messages)
    answered = [i for i, row in enumerate(rows) if row["answers"] and row["qtype"] is not None]
    assert len(answered) >= 5
    i = answered[0]
    for change in ({"answers": list(rows[i]["answers"][:-1]) + ["192.0.2.99"]},
                   {"qtype": rows[i]["qtype"] + 1}, {"rcode": 3}):
        bad = [dict(row, **change) if j == i else row for j, row in enumerate(rows)]
        assert len(disagreements(bad, messages)) == 1, change
