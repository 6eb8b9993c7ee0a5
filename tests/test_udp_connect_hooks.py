"""recorder/attach/udp_connect_hooks.py: which cgroup hooks attach beside the per-connect hook.

The hook itself, in a kernel that runs it, is the kernel matrix's `udp` check
(scripts/kernel_matrix.py, booted in CI by tests/test_kernel_matrix.py): this
host's kernel refuses fentry programs, so here every recording files connected
UDP per packet, and tests/test_container_live.py checks that path live.
"""

from __future__ import annotations

import contextlib

import pytest

from cicd_audit.errors import EnvironmentProblem
from cicd_audit.recorder.attach import udp_connect_hooks
from cicd_audit.recorder.kernel import bpf_syscall
from cicd_audit.recorder.kernel.bpf_program import LoadedFunction

EGRESS = bpf_syscall.ATTACH_CGROUP_INET_EGRESS
CONNECT4 = bpf_syscall.ATTACH_CGROUP_INET4_CONNECT


class Program:
    """What cgroup_programs needs of a CaptureProgram."""

    def __init__(self, with_hook: bool = True):
        self.cgroup_programs = {CONNECT4: 5, EGRESS: 6}
        self.udp_connect_fn = LoadedFunction("ca_udp_connect", -1, b"\0" * 16, "GPL") if with_hook else None


class Attached:
    def __init__(self, program):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


class Refused(Attached):
    def __enter__(self):
        raise EnvironmentProblem("the kernel refused an fentry program ([Errno 1] loading ca_udp_connect)")


def test_with_the_connect_hook_the_per_packet_program_stays_off(monkeypatch, capsys):
    monkeypatch.setattr(udp_connect_hooks, "UdpConnectHooks", Attached)
    with contextlib.ExitStack() as stack:
        assert udp_connect_hooks.cgroup_programs(stack, Program(), "cicd-audit") == {CONNECT4: 5}
    assert capsys.readouterr().err == ""


def test_where_the_kernel_refuses_it_one_line_says_so_and_every_hook_attaches(monkeypatch, capsys):
    monkeypatch.setattr(udp_connect_hooks, "UdpConnectHooks", Refused)
    with contextlib.ExitStack() as stack:
        assert udp_connect_hooks.cgroup_programs(stack, Program(), "cicd-audit agent") == {CONNECT4: 5, EGRESS: 6}
    err = capsys.readouterr().err
    assert err == ("cicd-audit agent: connected UDP sockets are matched to their process at every packet, "
                   "not once per connect(): the kernel refused an fentry program ([Errno 1] loading ca_udp_connect)\n")


def test_a_program_without_the_hook_keeps_its_hooks_and_says_nothing(capsys):
    with contextlib.ExitStack() as stack:
        assert udp_connect_hooks.cgroup_programs(stack, Program(with_hook=False), "cicd-audit") == {CONNECT4: 5, EGRESS: 6}
    assert capsys.readouterr().err == ""


def test_the_per_packet_path_can_be_asked_for(monkeypatch):
    monkeypatch.setenv(udp_connect_hooks.PER_PACKET_ENV, "1")
    with pytest.raises(EnvironmentProblem, match=f"{udp_connect_hooks.PER_PACKET_ENV}=1"):
        with udp_connect_hooks.UdpConnectHooks(Program()):
            pass


def test_the_layout_names_fields_this_kernel_has():
    layout = udp_connect_hooks.sock_layout()
    # struct sock starts with struct sock_common; inet_sock starts with struct sock
    assert 0 < layout.sock_cookie < layout.sock_protocol < layout.inet_sport
