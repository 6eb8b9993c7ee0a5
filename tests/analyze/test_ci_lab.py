"""The live CI lab (bench/ci_lab.py --short): a recorded job with real iodine and dns2tcp tunnels and a base32 drip.

Root and netns tier: builds two namespaces, runs dnsmasq, iodined, dns2tcpd
and the recorder. Skipped (with the reason) when a tool is missing; on the
project's CI VM all are installed.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cicd_audit.lab import naming

LAB = Path(__file__).resolve().parents[2] / "bench" / "ci_lab.py"
TOOLS = ("dnsmasq", "iodine", "iodined", "dns2tcpc", "dns2tcpd", "dig", "curl")


@pytest.mark.root
@pytest.mark.netns
@pytest.mark.slow
def test_live_ci_job_with_real_tunnels(tmp_path):
    missing = [t for t in TOOLS if not (shutil.which(t) or Path("/usr/sbin", t).exists())]
    if missing:
        pytest.skip(f"lab tools not installed: {', '.join(missing)} (apt-get install dnsmasq iodine dns2tcp dnsutils curl)")
    proc = subprocess.Popen([sys.executable, str(LAB), "--short", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the lab tears down on SIGTERM
        out, err = proc.communicate(timeout=60)
        pytest.fail(f"ci_lab.py timed out:\n{err[-3000:]}")
    # the lab removed everything it made (its names carry ci_lab.py's pid)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines()
    left = [name for name in [*(ln.split()[0] for ln in listed), *(p.name for p in Path("/etc/netns").glob("cat*"))]
            if (m := naming.NAMESPACE.match(name)) and int(m.group(1)) == proc.pid]
    assert not left
    assert proc.returncode == 0, err[-3000:]
    r = json.loads(out.strip().splitlines()[-1])
    assert r["job_failures"] == [], r["job_failures"]
    assert r["truth_seen"] == ["dns2tcp.example", "drip.example", "tunnel.example"]
    assert (r["precision"], r["recall"]) == (1.0, 1.0), (r["missed"], r["false_alarms"])
    assert r["registered_domains"] >= 60  # the CI host names really were looked up
    sev = {t["indicator"]: t["severity"] for t in r["tunnel_findings"]}
    assert sev["tunnel.example"] in ("high", "critical") and sev["dns2tcp.example"] in ("high", "critical")
    # every connection is explained by a DNS answer or is the resolver; the runner's neighbour
    # discovery, router solicitations and MLD reports on the lab's fd00:ca::/64 are not destinations
    assert r["other_findings"] == [], r["other_findings"]
