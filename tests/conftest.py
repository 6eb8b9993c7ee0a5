"""Shared fixtures for the recorder tests.

Tiers (markers in pyproject.toml): pure tests need nothing; `root` tests load
BPF programs (root and bcc); `netns` tests also create network namespaces and
veth pairs. A root/netns test is skipped only when this process is not root
or bcc cannot be imported, and the skip says which. On the project's CI VM
both hold, so nothing is skipped there.

`lab` is the lab of `cicd_audit.lab` (the one the demo and the benchmarks
use too): two namespaces joined by a veth pair, with dnsmasq and http.server
in the server's, torn down after the test whatever happened.
"""

from __future__ import annotations

import os

import pytest
from click_compat import keep_stderr_apart

from cicd_audit.lab import Lab

keep_stderr_apart()


def _root_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: loads BPF programs and creates network namespaces (run the suite as root)"
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        return f"needs bcc (python3-bpfcc, visible to this interpreter): {exc}"
    return None


def pytest_runtest_setup(item):
    if item.get_closest_marker("root") or item.get_closest_marker("netns"):
        reason = _root_skip_reason()
        if reason:
            pytest.skip(reason)


@pytest.fixture
def lab():
    """A fresh client/server namespace pair with dnsmasq and http.server (v4 and v6) in the server."""
    the_lab = Lab()
    try:
        the_lab.start_dnsmasq()
        the_lab.start_http()
        yield the_lab
    finally:
        the_lab.close()
