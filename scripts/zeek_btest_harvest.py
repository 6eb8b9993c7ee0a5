#!/usr/bin/env python3
"""Measure the recorder against Zeek's own btest suite, beyond ../shared/zeek-oracle.

One script of ~600 lines on purpose: it reads Zeek's btest format (test lines,
baselines, zeek-cut tables) end to end, and nothing else in the project does.

Finds every btest (testing/btest/...) of a Zeek source tree that runs zeek on a
trace (`zeek ... -r $TRACES/...`) and has a conn.log, dns.log, tunnel.log or weird.log
baseline (testing/btest/Baseline/<test>/conn*.log, dns*.log, tunnel*.log, weird*.log: the
log itself, a copy (`mv`/`cp`), or a `zeek-cut -m` table of it). For each such baseline it

1. extracts the trace and the baseline into a cache directory outside the
   repository (default /var/cache/cicd-audit/zeek-btest; Zeek's traces are not
   ours to ship and are never committed),
2. derives the configuration Zeek ran with from the test's own lines: `-b` and
   the protocol scripts it loads (likely_server_ports, via scripts/conformance.py's
   zeek_configuration), `-C` or `redef ignore_checksums = T`, `redef
   likely_server_ports += {...}`, the community-id script, JSON logs, the Zeek
   settings `record --redef` takes (`dns_max_queries=3` on the command line,
   `redef Tunnel::max_depth = 2` in the script),
3. runs `cicd-audit record --pcap` with it and compares with the oracle's
   `_tools/zeek_compare.py --ignore uid --ignore service` (the tool itself for
   conn.log and dns.log, its table comparison for tunnel.log and weird.log, which
   the tool's command line does not know). weird.log is compared on the names the
   recorder raises (WEIRD_SCOPE): Zeek's application analyzers raise the rest,
   and the recorder's own cicd_audit_* names are not Zeek's. A weird.log case with
   none of them on either side measures nothing and is listed as not harvested,
4. prints a per-case table and the pass rate, groups failures by cause, and
   writes docs/zeek-btest.md.

Causes are read from what the trace holds (a dissection of its frames: link
type, encapsulations, tunnels) and from the compare output; no trace is
special-cased.

    sudo nice -n 10 /opt/cicd-audit/venv/bin/python scripts/zeek_btest_harvest.py \
        [--zeek /work/.mirror/zeek+zeek/repo] [--cache DIR] [--only SUBSTR] [--out docs/zeek-btest.md]

--zeek is a Zeek git directory (bare or not) read with `git show`, at the
commit the shared oracle was taken from. Needs root and bcc (every packet runs
through the kernel program). Cases already in ../shared/zeek-oracle (same
baseline file) are left out unless --with-shared.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import re
import shlex
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import conformance  # noqa: E402  (zeek_configuration, the compare tool, the CLI path)

from cicd_audit.recorder.logs.weirds import IN_TUNNEL, WEIRD_NAMES  # noqa: E402
from cicd_audit.recorder.redefs import NAMES as REDEFS  # noqa: E402

sys.path.insert(0, str(conformance.COMPARE.parent))
import zeek_compare  # noqa: E402  (its compare_tables, for the logs its command line does not take)

DEFAULT_ZEEK = Path("/work/.mirror/zeek+zeek/repo")
DEFAULT_CACHE = Path("/var/cache/cicd-audit/zeek-btest")
BTEST = "testing/btest"
LOG_RE = re.compile(r"^(conn|dns|tunnel|weird)[^/]*$")
# The logs _tools/zeek_compare.py's command line compares; the others go through its compare_tables.
COMPARED_BY_TOOL = ("conn.log", "dns.log")


# ---------------------------------------------------------------------------
# Reading the Zeek tree

class ZeekTree:
    def __init__(self, git_dir: Path, rev: str = "HEAD"):
        self.git_dir, self.rev = git_dir, rev

    def _git(self, *args: str, binary: bool = False):
        out = subprocess.run(["git", "--git-dir", str(self.git_dir), *args], capture_output=True, check=False)
        if out.returncode != 0:
            return None
        return out.stdout if binary else out.stdout.decode("utf-8", "replace")

    def commit(self) -> str:
        return (self._git("rev-parse", self.rev) or "").strip()

    def files(self, under: str) -> list[str]:
        return (self._git("ls-tree", "-r", "--name-only", self.rev, under) or "").splitlines()

    def read(self, path: str) -> bytes | None:
        return self._git("show", f"{self.rev}:{path}", binary=True)


# ---------------------------------------------------------------------------
# From a btest to the zeek runs and the baselines they produced

@dataclass
class ZeekRun:
    trace: str                  # path under testing/btest/Traces
    flags: list[str]            # -b, -C, ...
    extra: list[str]            # everything else on the command line (scripts, redefs, -f ...)


@dataclass
class Case:
    name: str                   # <baseline dir>/<file>
    test_path: str
    baseline_path: str
    run: ZeekRun | None
    source_log: str = "conn.log"      # which log of the run the baseline holds
    cut: bool = False                 # a zeek-cut -m table
    script: str = ""                  # the test file (its zeek code)
    problem: str = ""                 # why it cannot be harvested as Zeek ran it
    options: list[str] = field(default_factory=list)

    @property
    def expected_name(self) -> str:
        base = self.source_log.split(".")[0]
        return f"{base}.cut.log" if self.cut else f"{base}.log"


def _exec_lines(text: str) -> list[str]:
    """The test's @TEST-EXEC commands, in order, up to the first @TEST-START-NEXT/FILE."""
    lines = []
    for line in text.splitlines():
        if "@TEST-START-NEXT" in line or "@TEST-START-FILE" in line:
            break
        m = re.search(r"@TEST-EXEC(?:-FAIL)?:\s*(.*)$", line)
        if m:
            lines.append(m.group(1).strip())
    return lines


def _zeek_run(cmd: str) -> ZeekRun | None | str:
    """The zeek invocation of one shell pipeline, if it reads a trace
    (`-r $TRACES/x`, or `-r -` fed by `zcat/cat <$TRACES/x |`)."""
    cmd = cmd.replace("${TRACES}", "$TRACES")
    try:
        words = shlex.split(cmd, comments=False)
    except ValueError:
        return None
    for i, w in enumerate(words):
        if os.path.basename(w) != "zeek":
            continue
        args = words[i + 1:]
        for stop in ("|", ">", ">>", "2>&1"):
            if stop in args:
                args = args[:args.index(stop)]
        args = [a for a in args if not a.startswith((">", "2>"))]
        flags, extra, traces, take = [], [], [], False
        for a in args:
            if take:
                traces.append(a)
                take = False
            elif re.fullmatch(r"-[bCr]+", a):
                flags += [f"-{c}" for c in a[1:] if c != "r"]
                take = a.endswith("r")
            else:
                extra.append(a)
        if not traces:
            return None
        if len(traces) > 1:
            return "zeek reads more than one trace"
        trace = traces[0]
        if trace == "-":
            feed = re.search(r"(?:z?cat)\s*<?\s*\$TRACES/(\S+)\s*\|", cmd)
            if not feed:
                return "zeek reads a trace from a pipe the harvester cannot follow"
            trace = "$TRACES/" + feed.group(1)
        if not trace.startswith("$TRACES/"):
            return f"trace {trace} is not from Traces/"
        return ZeekRun(trace[len("$TRACES/"):], flags, extra)
    return None


def cases_of_test(tree: ZeekTree, test_path: str, baseline_dir: str, wanted: list[str]) -> list[Case]:
    """Follow the test's commands like a shell would, well enough to know which
    zeek run wrote each wanted baseline file (directly, by mv/cp, or zeek-cut -m)."""
    text = (tree.read(test_path) or b"").decode("utf-8", "replace")
    produced: dict[str, tuple[ZeekRun | None, str, bool, str]] = {}
    last: ZeekRun | None = None
    last_problem = ""
    commands = [c.strip() for line in _exec_lines(text) for c in re.split(r"&&|;", line) if c.strip()]
    for cmd in commands:
        run = _zeek_run(cmd)
        if isinstance(run, str):
            last, last_problem = None, run
        elif run is not None:
            last, last_problem = run, ""
            for log in ("conn.log", "dns.log", "tunnel.log", "weird.log"):
                produced[log] = (last, log, False, "")
        m = re.match(r"^(?:mv|cp)\s+(\S+)\s+(\S+)\s*$", cmd)
        if m and m.group(1) in produced:
            produced[m.group(2)] = produced[m.group(1)]
        cut = re.search(r"zeek-cut\s+([^<|>]*?)\s*<\s*(\S+)\s*>\s*(\S+)\s*$", cmd) or \
            re.search(r"cat\s+(\S+)\s*\|\s*zeek-cut\s+([^<|>]*?)\s*>\s*(\S+)\s*$", cmd)
        if cut:
            if cmd.lstrip().startswith("cat"):
                src, opts, dst = cut.group(1), cut.group(2), cut.group(3)
            else:
                opts, src, dst = cut.group(1), cut.group(2), cut.group(3)
            if src in produced:
                run_, log, _, _ = produced[src]
                words = opts.split()
                problem = "" if "-m" in words and "-n" not in words else "zeek-cut without -m (no header to compare by)"
                produced[dst] = (run_, log, True, problem)
        # btest-diff-cut -m COLS LOG: the baseline LOG is a zeek-cut -m table of it.
        m = re.match(r"^btest-diff-cut\s+(.*?)\s*(\S+)\s*$", cmd)
        if m and m.group(2) in produced:
            run_, log, _, _ = produced[m.group(2)]
            words = m.group(1).split()
            problem = "" if "-m" in words and "-n" not in words else "zeek-cut without -m (no header to compare by)"
            produced[m.group(2)] = (run_, log, True, problem)
    out = []
    for fn in wanted:
        name = f"{baseline_dir}/{fn}"
        bpath = f"{BTEST}/Baseline/{baseline_dir}/{fn}"
        if fn not in produced:
            out.append(Case(name, test_path, bpath, None, script=text,
                            problem=last_problem or "no zeek -r run of the test writes it"))
            continue
        run, log, cut, problem = produced[fn]
        if run is None:
            problem = problem or last_problem or "not from a zeek -r run"
        out.append(Case(name, test_path, bpath, run, log, cut, text, problem))
    return out


def harvest(tree: ZeekTree) -> list[Case]:
    tests: dict[str, str] = {}
    for path in tree.files(BTEST):
        rel = path[len(BTEST) + 1:]
        if rel.startswith(("Baseline/", "Traces/", "scripts/diff", "Files/")) or "/" not in rel and rel.startswith("btest"):
            continue
        stem = rel.rsplit(".", 1)[0] if "." in os.path.basename(rel) else rel
        tests.setdefault(stem.replace("/", "."), path)
    baselines: dict[str, list[str]] = collections.defaultdict(list)
    for path in tree.files(f"{BTEST}/Baseline"):
        parts = path.split("/")
        if len(parts) == 5 and LOG_RE.match(parts[4]):
            baselines[parts[3]].append(parts[4])
    cases = []
    for bdir, files in sorted(baselines.items()):
        test = tests.get(bdir)
        if test is None:
            for f in sorted(files):
                cases.append(Case(f"{bdir}/{f}", "", f"{BTEST}/Baseline/{bdir}/{f}", None,
                                  problem="no single test file (a @TEST-START-NEXT variant or a plugin test)"))
            continue
        cases += cases_of_test(tree, test, bdir, sorted(files))
    return cases


# ---------------------------------------------------------------------------
# The configuration Zeek ran with, as record options

def record_options(case: Case) -> tuple[list[str], str]:
    """(options for `cicd-audit record`, a problem that makes the comparison
    meaningless, or "")."""
    run = case.run
    # The test file's own code counts only when zeek loads it (%INPUT).
    script = "\n".join(ln for ln in case.script.splitlines() if not ln.lstrip().startswith("#")) \
        if "%INPUT" in run.extra else ""
    options: list[str] = []
    if "-C" in run.flags or re.search(r"redef\s+ignore_checksums\s*=\s*T", script + " ".join(run.extra)):
        options.append("-C")
    loads = re.findall(r"@load\s+(\S+)", script) + [a for a in run.extra if not a.startswith("-") and "/" in a]
    ports = re.findall(r"redef\s+likely_server_ports\s*\+=\s*\{([^}]*)\}", script)
    port_items = re.findall(r"\b\d+/(?:tcp|udp)\b", " ".join(ports))
    scripts = "default (no -b)"
    if "-b" in run.flags:
        protos = sorted({m.group(1) for ld in loads for m in [re.search(r"protocols/([a-z0-9-]+)", ld)] if m})
        scripts = "bare: " + " + ".join(protos or ["conn"]) + "".join(f" {p}" for p in port_items)
    elif port_items:
        options += ["--likely-server-ports", ",".join(["default", *port_items])]
    probe = conformance.Case(case.name, Path("."), run.flags, [], scripts)
    options += conformance.zeek_configuration(probe)
    if any("community-id" in ld for ld in loads):
        options.append("--community-id")
    joined = script + " " + " ".join(run.extra)
    if re.search(r"use_json\s*=\s*T", joined):
        options += ["--format", "json"]
    # Zeek's settings record --redef takes, on its command line (name=value) or redef'd by the test's
    # script, or by policy/protocols/dns/auth-addl, which the test may load.
    if any("protocols/dns/auth-addl" in ld for ld in loads):
        joined += " dns_skip_all_auth=F dns_skip_all_addl=F"
    for name in REDEFS:
        for value in re.findall(rf"(?:^|\s|redef\s+){name}\s*=\s*(\w+)", joined):
            options += ["--redef", f"{name}={value}"]
    problem = ""
    if "-f" in run.extra:
        problem = "zeek ran with a BPF capture filter (-f)"
    return options, problem


# ---------------------------------------------------------------------------
# What a trace holds (for grouping failures by cause; never to special-case)

_TUNNEL_UDP = {4789: "VXLAN", 6081: "Geneve", 3544: "Teredo", 5072: "AYIYA", 2152: "GTP-U", 4754: "GRE over UDP"}
_LINK_LAYERS = {0x8847: "MPLS", 0x8848: "MPLS", 0x8864: "PPPoE", 0x88E7: "802.1ah PBB", 0x8926: "VN-Tag",
                0x8903: "Cisco FabricPath"}


def trace_features(data: bytes) -> collections.Counter:
    """Counter of link types, link layers between Ethernet and IP, and
    tunnels found in a pcap/pcapng byte string."""
    feats: collections.Counter = collections.Counter()
    for linktype, frame in _frames(data):
        if linktype != 1:
            feats[f"link type {linktype}"] += 1
            continue
        off, et = 12, None
        for _ in range(6):
            if len(frame) < off + 2:
                break
            et = struct.unpack("!H", frame[off:off + 2])[0]
            if et in (0x8100, 0x88A8, 0x9100):
                off += 4
                continue
            break
        if et in _LINK_LAYERS:
            feats[_LINK_LAYERS[et]] += 1
            continue
        l3 = frame[off + 2:]
        proto, l4 = None, b""
        if et == 0x0800 and len(l3) >= 20:
            proto, l4 = l3[9], l3[(l3[0] & 15) * 4:]
        elif et == 0x86DD and len(l3) >= 40:
            proto, l4 = l3[6], l3[40:]
        if proto == 47:
            feats["GRE"] += 1
        elif proto in (4, 41):
            feats["IP-in-IP"] += 1
        elif proto == 17 and len(l4) >= 4:
            sport, dport = struct.unpack("!HH", l4[:4])
            for port in (dport, sport):
                if port in _TUNNEL_UDP:
                    feats[_TUNNEL_UDP[port]] += 1
                    break
    return feats


def _frames(data: bytes):
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = "<" if magic[0] in (0xD4, 0x4D) else ">"
        linktype = struct.unpack(e + "I", data[20:24])[0] & 0x0FFFFFFF
        off = 24
        while off + 16 <= len(data):
            incl = struct.unpack(e + "I", data[off + 8:off + 12])[0]
            yield linktype, data[off + 16:off + 16 + incl]
            off += 16 + incl
    elif magic == b"\x0a\x0d\x0d\x0a":
        off, e, links = 0, "<", []
        while off + 12 <= len(data):
            btype = struct.unpack(e + "I", data[off:off + 4])[0]
            if btype == 0x0A0D0D0A:
                e = "<" if data[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
                links = []
            blen = struct.unpack(e + "I", data[off + 4:off + 8])[0]
            if blen < 12:
                break
            body = data[off + 8:off + blen - 4]
            if btype == 1:
                links.append(struct.unpack(e + "H", body[:2])[0])
            elif btype == 6 and len(body) >= 20:
                iface, cap = struct.unpack(e + "I", body[:4])[0], struct.unpack(e + "I", body[12:16])[0]
                if iface < len(links):
                    yield links[iface], body[20:20 + cap]
            off += blen


# ---------------------------------------------------------------------------
# Zeek logs and zeek-cut tables

def log_columns(lines: list[str]) -> list[str]:
    """A log's column names: its #fields line, or the first line of a zeek-cut -m table."""
    fields = next((ln.split("\t")[1:] for ln in lines if ln.startswith("#fields")), None)
    if fields is None:
        fields = next((ln.split("\t") for ln in lines if ln and not ln.startswith("#")), [])
    return fields


# ---------------------------------------------------------------------------
# weird.log: the names the recorder raises

# The kernel's names, Zeek's DNS analyzer's (the recorder's DNS parser raises them), its IP
# fragment reassembler's and its NFLOG analyzer's. Other names come from analyzers the recorder
# does not have.
_WEIRD_SCOPE = re.compile(r"(DNS|EDNS|DNSSEC|dns)_.*|fragment_.*|excessively_(small|large)_fragment|"
                          r"incompletely_captured_fragment|invalid_IP_header_size|.*nflog.*")
_KERNEL_WEIRDS = frozenset({"tunnel_depth"} | {n + suffix for n in WEIRD_NAMES.values() if not n.startswith("cicd_audit_")
                                                 for suffix in ("", IN_TUNNEL)})


def in_weird_scope(name: str) -> bool:
    return name in _KERNEL_WEIRDS or bool(_WEIRD_SCOPE.fullmatch(name))


def weird_rows_in_scope(log: Path, into: Path, outside: collections.Counter) -> int | None:
    """Copy weird.log (or a zeek-cut -m table of it) to `into` with only the rows whose name the
    recorder raises; count the other names in `outside`. Returns the rows kept, None without a name column."""
    lines = log.read_text(errors="replace").splitlines()
    fields = log_columns(lines)
    if "name" not in fields:
        return None
    col, kept, out = fields.index("name"), 0, []
    for ln in lines:
        cells = ln.split("\t")
        if not ln or ln.startswith("#") or cells == fields:      # header lines stay
            out.append(ln)
            continue
        name = cells[col] if col < len(cells) else ""
        if in_weird_scope(name):
            kept += 1
            out.append(ln)
        elif not name.startswith("cicd_audit_"):
            outside[name] += 1
    into.parent.mkdir(parents=True, exist_ok=True)
    into.write_text("\n".join(out) + "\n")
    return kept


# ---------------------------------------------------------------------------
# Running and judging

@dataclass
class Outcome:
    case: Case
    passed: bool
    cause: str
    details: list[str]


def prepare(tree: ZeekTree, case: Case, cache: Path) -> Path | None:
    cdir = cache / case.name.replace("/", "__")
    cdir.mkdir(parents=True, exist_ok=True)
    trace = cdir / "trace.pcap"
    if not trace.exists():
        blob = tree.read(f"{BTEST}/Traces/{case.run.trace}")
        if blob is None:
            return None
        if case.run.trace.endswith(".gz"):
            blob = gzip.decompress(blob)
        trace.write_bytes(blob)
    expected = cdir / "expected"
    expected.mkdir(exist_ok=True)
    for old in expected.iterdir():
        old.unlink()
    (expected / case.expected_name).write_bytes(tree.read(case.baseline_path) or b"")
    return cdir


def resolve_tunnel_parents(logs: Path, into: Path) -> Path:
    """Copies of the TSV logs in logs whose tunnel_parents name connections, not uids.

    Uids are random (ours) or seeded (Zeek's), so --ignore uid leaves tunnel_parents
    comparing two unrelated sets of names. Each parent uid becomes the 5-tuple of the
    row it names in the same log, or "tunnel" when no row has it (an IP tunnel, which
    Zeek logs in tunnel.log, or a zeek-cut table without the uid column): which
    connection carried a row is then compared, its uid is not. Returns logs itself
    when no row has a parent."""
    tables = {}
    for log in sorted(logs.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()
        fields = log_columns(lines)
        if "tunnel_parents" not in fields:
            continue
        tables[log.name] = (lines, fields)
    if not tables:
        return logs
    if into.exists():
        for old in into.iterdir():
            old.unlink()
    into.mkdir(exist_ok=True)
    for log in logs.iterdir():
        if log.is_file() and log.name not in tables:
            (into / log.name).write_bytes(log.read_bytes())
    for name, (lines, fields) in tables.items():
        rows = [ln.split("\t") for ln in lines if ln and not ln.startswith("#") and ln.split("\t") != fields]
        col = fields.index("tunnel_parents")
        named = {}
        if "uid" in fields:
            # The columns every table of these tests keeps (zeek-cut -m tables drop id.orig_p).
            ids = [fields.index(c) if c in fields else None for c in ("id.orig_h", "id.resp_h", "id.resp_p", "proto")]
            named = {r[fields.index("uid")]: "/".join("?" if i is None else r[i] for i in ids) for r in rows}
        out = []
        for ln in lines:
            if ln and not ln.startswith("#") and ln.split("\t") != fields:
                r = ln.split("\t")
                if r[col] not in ("-", "(empty)"):
                    r[col] = ",".join(sorted(named.get(u, "tunnel") for u in r[col].split(",")))
                ln = "\t".join(r)
            out.append(ln)
        (into / name).write_text("\n".join(out) + "\n")
    return into


NOTHING_IN_SCOPE = "its weird.log holds no name the recorder raises, nor does the recorder's"


def compare_log(case: Case, cdir: Path, expected: Path, actual: Path, outside: collections.Counter) -> list[str] | None:
    """The compare tool's table comparison of a tunnel.log or weird.log (weird.log on the names in
    scope); its problems, or None for a weird.log with nothing in scope on either side."""
    exp, act = expected / case.expected_name, actual / case.source_log
    if not act.exists():
        return [f"FAIL {case.source_log} not produced"]
    ignore = {"uid", "service"}
    if case.source_log == "weird.log":
        ignore.add("peer")           # the writer's name: zeek, or cicd-audit
        kept_exp = weird_rows_in_scope(exp, cdir / "weird-scope" / "expected.log", outside)
        kept_act = weird_rows_in_scope(act, cdir / "weird-scope" / "actual.log", collections.Counter())
        if kept_exp is None:
            return ["the baseline has no name column"]
        if kept_exp == 0 and kept_act == 0:
            return None
        exp, act = cdir / "weird-scope" / "expected.log", cdir / "weird-scope" / "actual.log"
    return zeek_compare.compare_tables(str(exp), str(act), ignore, False)


def judge(case: Case, cdir: Path, options: list[str], timeout: int, outside: collections.Counter) -> Outcome:
    out = cdir / "actual"
    if out.exists():
        for f in out.iterdir():
            f.unlink()
        out.rmdir()
    cmd = [str(conformance.CLI), "record", "--pcap", str(cdir / "trace.pcap"), "--out", str(out),
           "--no-progress", *options]
    rec = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    feats = trace_features((cdir / "trace.pcap").read_bytes())
    if rec.returncode != 0:
        msg = (rec.stderr.strip().splitlines() or ["?"])[0]
        m = re.search(r"link type (\d+)", msg)
        return Outcome(case, False, f"link type {m.group(1)} not supported" if m else "record failed",
                       [f"record exited {rec.returncode}: {msg}"])
    expected = resolve_tunnel_parents(cdir / "expected", cdir / "expected-resolved")
    actual = resolve_tunnel_parents(out, cdir / "actual-resolved")
    if case.source_log in COMPARED_BY_TOOL:
        cmpd = subprocess.run([sys.executable, str(conformance.COMPARE), str(expected), str(actual),
                               "--ignore", "uid", "--ignore", "service"], capture_output=True, text=True,
                              timeout=timeout)
        lines = [ln.strip() for ln in (cmpd.stdout + cmpd.stderr).splitlines()
                 if ln.strip() and not ln.startswith(("OK", "WARN"))]
        passed = cmpd.returncode == 0
    else:
        lines = compare_log(case, cdir, expected, actual, outside)
        if lines is None:
            return Outcome(case, False, NOTHING_IN_SCOPE, [])
        passed = not lines
    if passed:
        return Outcome(case, True, "", [])
    return Outcome(case, False, classify(case, feats, lines), lines)


_TUNNELS = ("GRE", "IP-in-IP", "VXLAN", "Geneve", "Teredo", "AYIYA", "GTP-U", "GRE over UDP")
# Causes out of scope by construction (docs/conformance.md): what the test's own script or options
# change in Zeek, and what Zeek's application-layer analyzers add. The in-scope rate leaves them out.
LOG_COLUMNS = "log columns: the test's script or options change the log's fields"
ANALYZER_X = "history X from a protocol analyzer"
ANALYZER_TUNNELS = "tunnel rows of Zeek's application analyzers (HTTP CONNECT, SOCKS)"
SCRIPT_EDITS_ROWS = "the test's script edits the log rows"
SCRIPT_PROCESSING = "the test's script changes how packets are processed (no record option says the same)"
OUT_OF_SCOPE = (LOG_COLUMNS, ANALYZER_X, ANALYZER_TUNNELS, SCRIPT_EDITS_ROWS, SCRIPT_PROCESSING)
# Zeek script settings that decide which packets are analysed and how: packet filters the script
# installs, bytes it skips, checksum exceptions, connections it stops processing (GridFTP's script
# does, for a data channel its SSL analyzer identifies). The recorder has no option for them.
_PACKET_PROCESSING = re.compile(r"PacketFilter::|NetControl::|capture_filters|restrict_filters|Pcap::install_pcap_filter|"
                                r"PacketAnalyzer::SKIP|ignore_checksums_nets|skip_further_processing|"
                                r"protocols/ftp/gridftp")
# Tunnels Zeek's application analyzers find (HTTP CONNECT, SOCKS): tunnel.log rows no packet analyzer writes.
_ANALYZER_TUNNEL = re.compile(r"Tunnel::(HTTP|SOCKS)\b")


def classify(case: Case, feats: collections.Counter, lines: list[str]) -> str:
    text = "\n".join(lines)
    if "header #fields differs" in text or "lacks columns" in text or "header #" in text:
        return LOG_COLUMNS
    if _PACKET_PROCESSING.search(case.script + " " + " ".join(case.run.extra)):
        return SCRIPT_PROCESSING
    differing = [ln for ln in lines if ln.startswith(("missing row", "unexpected row"))]
    if differing and all(_ANALYZER_TUNNEL.search(ln) for ln in differing):
        return ANALYZER_TUNNELS
    diffs = re.findall(r"(\w[\w.]*): expected '([^']*)' got '([^']*)'", text)
    if diffs and all(c == "history" for c, _, _ in diffs) and any("X" in e and "X" not in g for _, e, g in diffs):
        return ANALYZER_X
    tunnels = [t for t in _TUNNELS if feats.get(t)]
    if tunnels:
        return "tunnel: " + ", ".join(tunnels)
    links = [n for n in _LINK_LAYERS.values() if feats.get(n)]
    if links:
        return "link layer: " + ", ".join(sorted(set(links)))
    linktypes = sorted(k for k in feats if k.startswith("link type"))
    if linktypes:
        return ", ".join(linktypes)
    script = case.script
    if re.search(r"\bc\$(conn|dns)\$\w+\s*(\+?=|\+=)", script) or re.search(r"redef\s+record\s+(Conn|DNS)::Info", script):
        return SCRIPT_EDITS_ROWS
    if diffs:
        cols = sorted({c for c, _, _ in diffs})
        return "row values differ: " + ", ".join(cols)
    if "missing row" in text and "unexpected row" in text:
        return "rows differ (missing and unexpected)"
    if "missing row" in text:
        return "rows missing"
    if "unexpected row" in text:
        return "unexpected rows"
    return "other"


def shared_baselines() -> set[str]:
    out = set()
    for meta in conformance.ORACLE.glob("*/meta.json"):
        for e in json.loads(meta.read_text()).get("expected", []):
            src = e.get("source", "").split(" ")[0]
            if src.startswith(BTEST + "/Baseline/"):
                out.add(src)
    return out


def render(outcomes: list[Outcome], skipped: list[Case], commit: str, excluded_shared: int,
           outside: collections.Counter) -> str:
    passed = sum(o.passed for o in outcomes)
    n = len(outcomes)
    causes = collections.Counter(o.cause for o in outcomes if not o.passed)
    out = sum(causes[c] for c in OUT_OF_SCOPE)
    lines = [
        "# Zeek's btest suite beyond the shared oracle",
        "",
        "Generated by `scripts/zeek_btest_harvest.py`; do not edit by hand. Every btest of Zeek",
        f"(commit `{commit[:12]}`) that runs zeek on a trace and has a conn.log, dns.log, tunnel.log or weird.log",
        "baseline is recorded with `cicd-audit record --pcap` in the configuration the test ran Zeek with",
        "(`-b` and loaded protocol scripts as `--likely-server-ports`, `-C`, likely_server_ports redefs,",
        "community-id, JSON) and compared by the oracle's `_tools/zeek_compare.py --ignore uid --ignore service`",
        "(conn.log and dns.log by the tool, tunnel.log and weird.log by its table comparison, which its command",
        "line does not offer; uids differ, so `tunnel_parents` is compared by the connections it names: each",
        "parent uid becomes that row's addresses, responder port and protocol, or `tunnel` for an IP tunnel,",
        "which has no row). weird.log is compared on the names the recorder raises (the kernel's, Zeek's DNS",
        "analyzer's, its fragment reassembler's and its NFLOG analyzer's; `peer` ignored): the other names come from analyzers the",
        "recorder does not have, and are counted at the end. A weird.log case with no such name on either",
        "side is not counted.",
        f"Cases whose baseline is already in `../shared/zeek-oracle` are left out ({excluded_shared}).",
        "The traces and baselines are extracted to a cache outside the repository, never committed.",
        "",
        f"**{passed} of {n} cases pass ({100 * passed / n:.0f}%).**" if n else "**no cases**",
        "",
        f"Out of scope by construction ({out}: {', '.join(OUT_OF_SCOPE)}), "
        f"so **{passed} of {n - out} in scope pass ({100 * passed / max(1, n - out):.1f}%)**.",
        "",
        "## Failures by cause",
        "",
        "| cases | cause |",
        "|---|---|",
    ]
    for cause, count in causes.most_common():
        lines.append(f"| {count} | {_cell(cause)} |")
    lines += ["", "## Failing cases", "", "| case | cause | first lines of the compare output |", "|---|---|---|"]
    for o in outcomes:
        if not o.passed:
            lines.append(f"| {o.case.name} | {_cell(o.cause)} | {'<br>'.join(_code(d) for d in o.details[:3])} |")
    lines += ["", "## Not harvested", "",
              "Baselines the harvester cannot tie to one `zeek -r` run as Zeek ran it (not counted above).", "",
              "| baseline | why |", "|---|---|"]
    for c in skipped:
        lines.append(f"| {c.name} | {_cell(c.problem)} |")
    lines += ["", "## Passing cases", "", ", ".join(o.case.name for o in outcomes if o.passed), ""]
    lines += ["## weird.log names outside the comparison", "",
              "Names in the weird.log baselines of the cases above that the recorder never raises, with their rows:",
              "", ", ".join(f"{_cell(name)} ({count})" for name, count in sorted(outside.items())) or "none", ""]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    text = text.replace("|", "\\|")
    return "`" + (text if len(text) <= 160 else text[:157] + "...").replace("`", "'") + "`"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zeek", type=Path, default=DEFAULT_ZEEK, help="Zeek git directory")
    ap.add_argument("--rev", default="HEAD")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--only", action="append", default=[], help="run cases whose name contains this (repeatable)")
    ap.add_argument("--with-shared", action="store_true", help="also run cases already in ../shared/zeek-oracle")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "zeek-btest.md",
                    help="summary to write (skipped with --only)")
    ap.add_argument("--json", type=Path, help="also write every outcome as JSON")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--list", action="store_true", help="list the cases and their options; run nothing")
    args = ap.parse_args()
    if REPO in args.cache.resolve().parents or args.cache.resolve() == REPO:
        ap.error("--cache must be outside the repository: Zeek's traces are not ours to ship")
    tree = ZeekTree(args.zeek, args.rev)
    commit = tree.commit()
    if not commit:
        ap.error(f"{args.zeek} is not a readable git directory")
    shared = set() if args.with_shared else shared_baselines()
    cases = harvest(tree)
    excluded = [c for c in cases if c.baseline_path in shared]
    cases = [c for c in cases if c.baseline_path not in shared]
    runnable, skipped = [], []
    for c in cases:
        if not c.problem:
            c.options, c.problem = record_options(c)
        (skipped if c.problem else runnable).append(c)
    if args.only:
        runnable = [c for c in runnable if any(s in c.name for s in args.only)]
    if args.list:
        for c in runnable:
            print(f"{c.name:70s} {c.run.trace:45s} {' '.join(c.options)}")
        for c in skipped:
            print(f"SKIP {c.name:65s} {c.problem}")
        print(f"{len(runnable)} runnable, {len(skipped)} not harvested, {len(excluded)} in ../shared")
        return 0
    outcomes, outside = [], collections.Counter()
    for c in runnable:
        cdir = prepare(tree, c, args.cache)
        if cdir is None:
            c.problem = f"trace {c.run.trace} is missing from the Zeek tree"
            skipped.append(c)
            continue
        o = judge(c, cdir, c.options, args.timeout, outside)
        if o.cause == NOTHING_IN_SCOPE:
            c.problem = NOTHING_IN_SCOPE
            skipped.append(c)
            continue
        outcomes.append(o)
        print(f"{'pass' if o.passed else 'FAIL'}  {c.name:70s} {' '.join(c.options):40s} {o.cause}", flush=True)
    passed = sum(o.passed for o in outcomes)
    print(f"\n{passed}/{len(outcomes)} pass ({100 * passed / max(1, len(outcomes)):.1f}%); "
          f"{len(skipped)} not harvested, {len(excluded)} in ../shared", flush=True)
    for cause, count in collections.Counter(o.cause for o in outcomes if not o.passed).most_common():
        print(f"{count:4d}  {cause}")
    if args.json:
        args.json.write_text(json.dumps([{"case": o.case.name, "passed": o.passed, "cause": o.cause,
                                          "options": o.case.options, "details": o.details[:5]}
                                         for o in outcomes], indent=1))
    if not args.only:
        args.out.write_text(render(outcomes, skipped, commit, len(excluded), outside))
        print(f"-> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
