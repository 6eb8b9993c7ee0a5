#!/usr/bin/env python3
"""Peak memory of `cicd-audit analyze` on hostile logs: one huge line, a gzip bomb.

Usage:
    python bench/reader_limits_bench.py [--dir /tmp/cicd-audit-limits] [--size-mb 1024]

What it does: writes two sessions under --dir (never in the repository):
``line/dns.log``, a dns.log whose one data line is --size-mb long, and
``bomb/dns.log.gz``, --size-mb of newlines after a dns.log header, gzipped
to about a thousandth of that. Then runs ``cicd-audit analyze`` on each
under ``/usr/bin/time -v`` and prints exit status, the first line of
stderr, wall time and peak RSS. Expected: exit 2 and a one-line error
naming the limit (``max_line_bytes``, ``max_gzip_ratio``) from
``cicd_audit.zeeklog.limits``.

Overhead: writes --size-mb to disk once (cached), about 1 s per run.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import subprocess
import sys

HEADER = (
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tdns\n"
    "#fields\tts\tuid\tquery\n#types\ttime\tstring\tstring\n"
)
BLOCK = 64 << 20


def write_inputs(root: str, size_mb: int) -> dict[str, str]:
    blocks = max(1, (size_mb << 20) // BLOCK)
    line = os.path.join(root, "line", "dns.log")
    bomb = os.path.join(root, "bomb", "dns.log.gz")
    if not os.path.exists(line):
        os.makedirs(os.path.dirname(line), exist_ok=True)
        with open(line, "wb") as f:
            f.write(HEADER.encode() + b"1.0\tC1\t")
            for _ in range(blocks):
                f.write(b"a" * BLOCK)
            f.write(b"\n")
    if not os.path.exists(bomb):
        os.makedirs(os.path.dirname(bomb), exist_ok=True)
        with gzip.open(bomb, "wb", compresslevel=9) as g:
            g.write(HEADER.encode())
            for _ in range(blocks):
                g.write(b"\n" * BLOCK)
    return {"one huge line": os.path.dirname(line), "gzip bomb": os.path.dirname(bomb)}


def measure(session: str) -> dict:
    exe = shutil.which("cicd-audit") or os.path.join(os.path.dirname(sys.executable), "cicd-audit")
    r = subprocess.run(["/usr/bin/time", "-v", exe, "analyze", session], capture_output=True, text=True)
    err = r.stderr
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", err).group(1)
    first = next((ln for ln in err.splitlines() if ln.startswith("cicd-audit")), "")
    return {"rc": r.returncode, "rss_mb": rss / 1024, "wall": wall, "message": first}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp/cicd-audit-limits")
    ap.add_argument("--size-mb", type=int, default=1024)
    args = ap.parse_args()
    for name, session in write_inputs(args.dir, args.size_mb).items():
        files = [os.path.join(session, f) for f in os.listdir(session)]
        m = measure(session)
        print(f"{name}: {os.path.getsize(files[0])} bytes on disk; exit {m['rc']}, {m['wall']}, peak RSS {m['rss_mb']:.0f} MB")
        print(f"  {m['message']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
