#!/usr/bin/env python3
"""Peak memory and wall time of `cicd-audit analyze` on a large, valid dns.log (issue 14).

Usage:
    python bench/reader_memory.py [--sizes 0.5,1,2] [--against REV] [--rounds 1] [--mode analyze|load]
                                  [--format tsv|json] [--dir /var/tmp]

What it does: writes one dns.log per size (GB) into a temporary directory
under --dir (deleted at the end): a benign mix (package registries, cloud
buckets with per-tenant names, CDN keys, telemetry ids: many distinct names,
A/AAAA/CNAME answers) with a DNS tunnel woven in (unique base32 labels under
one domain, TXT answers), about a quarter of the rows; with ``--format json``
the same rows as Zeek's JSON lines (unset fields left out). Then runs
``cicd-audit analyze DIR --format json`` on each in a child process and
reports its peak RSS (``wait4``'s ``ru_maxrss``) and wall time. With
``--mode load`` the child runs ``load_logs`` alone: the reader's share.

With ``--against REV`` (e.g. ``main``) the same runs are made with that
revision's code too, alternated (A, B, B, A, ...): ``git archive REV`` is
unpacked into the temporary directory and imported through the mapping of
its own ``setup.cfg`` (``package_dir``), so no install is touched; the
working tree is imported the same way.

Nothing is sent anywhere; no namespace is needed. Overhead: writes the
sizes' sum to disk (about 40 s a GB), then one analysis per size and code.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

FIELDS = ("ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto trans_id rtt query qclass qclass_name qtype "
          "qtype_name rcode rcode_name AA TC RD RA Z answers TTLs rejected").split()
TYPES = ("time string addr port addr port enum count interval string count string count string count string "
         "bool bool bool bool count vector[string] vector[interval] bool").split()

HEX = "0123456789abcdef"
B62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def header() -> str:
    return ("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tdns\n"
            "#open\t2026-12-05-10-00-00\n#fields\t" + "\t".join(FIELDS) + "\n#types\t" + "\t".join(TYPES) + "\n")


def benign_names(rng: random.Random) -> list[str]:
    """Names a CI job looks up: fixed services, plus per-tenant and per-object names that keep growing."""
    fixed = ["registry.npmjs.org", "pypi.org", "files.pythonhosted.org", "github.com", "api.github.com",
             "objects.githubusercontent.com", "ghcr.io", "registry-1.docker.io", "auth.docker.io",
             "production.cloudflare.docker.com", "proxy.golang.org", "sum.golang.org", "repo.maven.apache.org",
             "deb.debian.org", "security.debian.org", "dl-cdn.alpinelinux.org", "crates.io", "static.crates.io"]
    tenant = [f"{''.join(rng.choices(HEX, k=12))}.s3.us-east-1.amazonaws.com" for _ in range(3000)]
    cdn = [f"d{''.join(rng.choices(B62.lower()[:36], k=13))}.cloudfront.net" for _ in range(3000)]
    telemetry = [f"{''.join(rng.choices(HEX, k=8))}-{''.join(rng.choices(HEX, k=4))}.ingest.sentry.io" for _ in range(2000)]
    return fixed * 200 + tenant + cdn + telemetry


def json_line(line: str) -> str:
    """A TSV row of FIELDS as Zeek's JSON writer puts it: unset fields left out, typed values."""
    row = {}
    for name, ztype, value in zip(FIELDS, TYPES, line.split("\t")):
        if value == "-":
            continue
        element = ztype[ztype.find("[") + 1:-1] if ztype.startswith("vector[") else ztype
        values = [_json_value(v, element) for v in value.split(",")] if element != ztype else _json_value(value, ztype)
        row[name] = values
    return json.dumps(row, separators=(",", ":"))


def _json_value(value: str, ztype: str):
    if ztype in ("time", "interval", "double"):
        return float(value)
    if ztype in ("count", "port", "int"):
        return int(value)
    if ztype == "bool":
        return value == "T"
    return value


def write_log(path: Path, target_bytes: int, seed: int = 14, fmt: str = "tsv") -> int:
    """A dns.log of about ``target_bytes`` (TSV, or JSON lines); returns its row count."""
    rng = random.Random(seed)
    names = benign_names(rng)
    answers = [f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
               for _ in range(5000)]
    rows = 0
    ts = 1_764_928_800.0
    written = 0
    with open(path, "w", encoding="ascii", buffering=1 << 22) as f:
        if fmt == "tsv":
            f.write(header())
        lines: list[str] = []
        while written < target_bytes:
            for _ in range(4096):
                ts += rng.random() * 0.004
                uid = f"C{rng.getrandbits(68):017x}"
                sport = rng.randrange(32768, 61000)
                tid = rng.randrange(65536)
                if rng.random() < 0.25:  # the tunnel: a fresh label every query, TXT answers
                    label = base64.b32encode(rng.randbytes(33)).decode("ascii").lower()[:52]
                    q = f"{label}.{rows:x}.t.exfil-tunnel.example"
                    line = (f"{ts:.6f}\t{uid}\t10.0.2.15\t{sport}\t10.0.2.3\t53\tudp\t{tid}\t0.0{rng.randrange(10, 99)}\t"
                            f"{q}\t1\tC_INTERNET\t16\tTXT\t0\tNOERROR\tT\tF\tT\tT\t0\t"
                            f"TXT 40 {base64.b32encode(rng.randbytes(25)).decode('ascii').lower()}\t60.000000\tF")
                else:
                    q = rng.choice(names)
                    a = rng.choice(answers)
                    kind = rng.random()
                    if kind < 0.7:
                        qt, qn, ans, ttl = 1, "A", f"{a},{rng.choice(answers)}", "300.000000,300.000000"
                    elif kind < 0.9:
                        qt, qn, ans, ttl = 28, "AAAA", f"2606:4700::{rng.randrange(1, 65535):x}", "300.000000"
                    else:
                        qt, qn, ans, ttl = 1, "A", "-", "-"
                    rcode, rname = (0, "NOERROR") if ans != "-" else (3, "NXDOMAIN")
                    line = (f"{ts:.6f}\t{uid}\t10.0.2.15\t{sport}\t10.0.2.3\t53\tudp\t{tid}\t0.00{rng.randrange(1000, 9999)}\t"
                            f"{q}\t1\tC_INTERNET\t{qt}\t{qn}\t{rcode}\t{rname}\tF\tF\tT\tT\t0\t{ans}\t{ttl}\tF")
                lines.append(line)
            chunk = "\n".join(lines if fmt == "tsv" else map(json_line, lines)) + "\n"
            f.write(chunk)
            written += len(chunk)
            rows += len(lines)
            lines.clear()
        if fmt == "tsv":
            f.write("#close\t2026-12-05-11-00-00\n")
    return rows


BOOTSTRAP = r"""
import configparser, importlib.util, json, os, sys
root = sys.argv.pop(1)
cfg = configparser.ConfigParser()
cfg.read(os.path.join(root, "setup.cfg"))
mapping = {}
for line in cfg["options"]["package_dir"].strip().splitlines():
    name, _, rel = line.partition("=")
    mapping[name.strip()] = os.path.join(root, rel.strip())

class Checkout:
    # packages come from the checkout's own package_dir, as an install lays them out
    @staticmethod
    def find_spec(fullname, path=None, target=None):
        where = mapping.get(fullname)
        if where is None:
            return None
        return importlib.util.spec_from_file_location(
            fullname, os.path.join(where, "__init__.py"), submodule_search_locations=[where])

sys.meta_path.insert(0, Checkout)
if sys.argv[1] == "load":  # the reader alone: load_logs, then the rows and columns as JSON
    from cicd_audit.zeeklog.reader import load_logs
    dns = load_logs(sys.argv[2]).dns
    print(json.dumps({"summary": {"dns_queries": len(dns)}, "columns": list(dns.columns)}))
else:
    sys.argv[0:2] = ["cicd-audit"]
    from cicd_audit.analyzers.cli import analyze
    analyze()
"""


def run(mode: str, session: Path, checkout: Path) -> dict:
    """One child running ``mode`` ("analyze": ``cicd-audit analyze --format json``;
    "load": ``load_logs`` alone) with ``checkout``'s code: its peak RSS (MB),
    wall time (s), and what it found, to check both codes agree."""
    argv = [sys.executable, "-c", BOOTSTRAP, str(checkout), mode, str(session)]
    if mode == "analyze":
        argv += ["--format", "json"]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd="/")
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not all children's
        code = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        text, errtext = out.read().decode(), err.read().decode()
    if code not in (0, 1):  # 1: analyze's --fail-on, never set here
        raise SystemExit(f"{mode} failed ({code}): {errtext[-2000:]}")
    report = json.loads(text)
    findings = report.get("findings", [])
    tunnel = sorted({(f.get("severity"), f.get("indicator")) for f in findings if f.get("analyzer") == "dns_tunnel"})
    return {"rss_mb": usage.ru_maxrss / 1024, "wall_s": wall, "findings": len(findings), "tunnel": tunnel,
            "dns_queries": report.get("summary", {}).get("dns_queries")}


def unpack(rev: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0.5,1,2", help="log sizes in GB, comma-separated")
    parser.add_argument("--against", metavar="REV", help="also run this revision's code, alternated")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--mode", choices=("analyze", "load"), default="analyze",
                        help="analyze: the whole command; load: the reader alone (load_logs)")
    parser.add_argument("--format", choices=("tsv", "json"), default="tsv", help="the log's format")
    parser.add_argument("--dir", default="/var/tmp", help="where the temporary logs go (never the repository)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="reader-memory-", dir=args.dir))
    try:
        base = unpack(args.against, work / "base") if args.against else None
        codes = [("tree", REPO)] + ([(args.against, base)] if base else [])
        for size in [float(s) for s in args.sizes.split(",")]:
            session = work / f"s{size:g}"
            session.mkdir()
            t0 = time.perf_counter()
            rows = write_log(session / "dns.log", int(size * (1 << 30)), fmt=args.format)
            mb = (session / "dns.log").stat().st_size / (1 << 20)
            print(f"# {size:g} GB {args.format}: {mb:.0f} MiB, {rows} rows, written in {time.perf_counter() - t0:.0f} s", flush=True)
            for r in range(args.rounds):
                order = codes if r % 2 == 0 else codes[::-1]
                for label, checkout in order:
                    res = run(args.mode, session, checkout)
                    print(json.dumps({"mode": args.mode, "size_gb": size, "log_mib": round(mb), "rows": rows, "code": label, **res,
                                      "rss_mb": round(res["rss_mb"]), "wall_s": round(res["wall_s"], 1)}), flush=True)
            shutil.rmtree(session)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
