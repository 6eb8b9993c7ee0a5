"""Live capture of a real VXLAN tunnel: the kernel's vxlan devices in the lab's
two namespaces, over the veth pair the recorder watches, as a Kubernetes node's
uplink carries pod traffic (Flannel, Calico in VXLAN mode). The recorder sees
only the outer packets, GSO and GRO super-packets among them, and must write
the pods' connections with their tunnels, as for a capture."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cicd_audit.lab import V4, Lab
from cicd_audit.zeeklog.reader import read_log

pytestmark = [pytest.mark.root]

POD = ("10.97.0.1", "10.97.0.2")     # the addresses inside the tunnel
PORT = 8081


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def vxlan_lab():
    lab = Lab()
    try:
        for ns, dev, local, remote, pod in ((lab.client_ns, lab.client_if, V4[0], V4[1], POD[0]),
                                            (lab.server_ns, lab.server_if, V4[1], V4[0], POD[1])):
            _ip("-n", ns, "link", "add", "vx0", "type", "vxlan", "id", "42", "local", local, "remote", remote,
                "dstport", "4789", "dev", dev)
            _ip("-n", ns, "addr", "add", f"{pod}/24", "dev", "vx0")
            _ip("-n", ns, "link", "set", "vx0", "up")
        lab.popen(lab.server_ns, [sys.executable, "-m", "http.server", str(PORT), "--bind", POD[1]],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/usr/share")
        lab.wait_listening("-ltn", f"{POD[1]}:{PORT}")
        yield lab
    finally:
        lab.close()


def test_live_vxlan_pod_traffic_is_recorded_with_its_tunnels(vxlan_lab, tmp_path):
    vxlan_lab.udp_sink(POD[1], 9999)
    send = (f"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            f"[s.sendto(b'x' * 100, ('{POD[1]}', 9999)) for _ in range(3)]")
    job = f"{sys.executable} -c \"{send}\" && curl -sf -o /dev/null http://{POD[1]}:{PORT}/"
    r = vxlan_lab.record(tmp_path, ["sh", "-c", job], "--no-progress")
    assert r.returncode == 0, r.stderr
    rows = list(read_log(tmp_path / "conn.log")[1])
    outer = {r["uid"]: r for r in rows if r["proto"] == "udp" and r["id.resp_p"] == 4789}
    assert outer and all(str(r["id.orig_h"]) in V4 for r in outer.values())

    udp = [r for r in rows if r["proto"] == "udp" and r["id.resp_p"] == 9999]
    assert len(udp) == 1
    assert (str(udp[0]["id.orig_h"]), udp[0]["orig_pkts"], udp[0]["orig_ip_bytes"]) == (POD[0], 3, 3 * 128)
    assert set(udp[0]["tunnel_parents"]) <= set(outer)

    http = [r for r in rows if r["proto"] == "tcp" and r["id.resp_p"] == PORT]
    assert len(http) == 1
    http = http[0]
    assert (str(http["id.orig_h"]), str(http["id.resp_h"])) == POD
    assert http["conn_state"] == "SF" and http["history"].startswith("ShAD")
    assert http["resp_bytes"] > 1000                  # the directory listing
    assert set(http["tunnel_parents"]) <= set(outer)

    tunnels = list(read_log(tmp_path / "tunnel.log")[1])
    discovered = {t["uid"] for t in tunnels if t["action"] == "Tunnel::DISCOVER"}
    assert {t["tunnel_type"] for t in tunnels} == {"Tunnel::VXLAN"}
    assert set(udp[0]["tunnel_parents"]) | set(http["tunnel_parents"]) <= discovered
