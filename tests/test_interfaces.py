"""Which interfaces record and record --block attach to, in a namespace made for
the test: an uplink veth with the default route, a bridge (like docker0) and a
veth enslaved to it (like a container's), all up. Nothing is attached here;
the choice is computed inside the namespace."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cicd_audit.lab import in_netns

pytestmark = [pytest.mark.root, pytest.mark.netns]

CHOOSE = """
import sys
from cicd_audit.errors import UsageError
from cicd_audit.recorder.attach.interfaces import choose_interfaces
requested, blocking = sys.argv[1:-1], sys.argv[-1] == "block"
try:
    print(" ".join(sorted(choose_interfaces(requested, blocking))))
except UsageError as exc:
    print("UsageError:", exc)
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def host():
    """A namespace like a container host: up0 (uplink), br0 (bridge), vp0 (port of br0)."""
    ns, peer_ns = f"caif{os.getpid()}h", f"caif{os.getpid()}p"
    try:
        for name in (ns, peer_ns):
            ip("netns", "add", name)
        ip("-n", ns, "link", "add", "up0", "type", "veth", "peer", "name", "up0p", "netns", peer_ns)
        ip("-n", ns, "link", "add", "br0", "type", "bridge")
        ip("-n", ns, "link", "add", "vp0", "type", "veth", "peer", "name", "vp0p", "netns", peer_ns)
        ip("-n", ns, "link", "set", "vp0", "master", "br0")
        for dev in ("up0", "br0", "vp0"):
            ip("-n", ns, "link", "set", dev, "up")
        ip("-n", ns, "addr", "add", "10.97.0.1/24", "dev", "up0")
        yield ns
    finally:
        for name in (ns, peer_ns):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def choose(ns: str, *requested: str, block: bool) -> str:
    argv = in_netns(ns, [sys.executable, "-c", CHOOSE, *requested, "block" if block else "record"])
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def test_recording_takes_every_interface_that_is_up(host):
    assert choose(host, block=False) == "br0 up0 vp0"


def test_blocking_takes_the_uplink(host):
    ip("-n", host, "route", "add", "default", "via", "10.97.0.2", "dev", "up0")
    assert choose(host, block=True) == "up0"


def test_blocking_without_a_default_route_leaves_bridges_out(host):
    assert choose(host, block=True) == "up0"


@pytest.mark.parametrize("name, role", [("br0", "bridge"), ("vp0", "bridge port")])
def test_blocking_refuses_a_bridge_or_its_port(host, name, role):
    out = choose(host, "up0", name, block=True)
    assert out.startswith(f"UsageError: --block cannot enforce on {name}, a {role}:"), out
    assert choose(host, name, block=False) == name, "recording a bridge is fine"
