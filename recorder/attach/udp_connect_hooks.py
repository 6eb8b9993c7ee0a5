"""Attach the connected-UDP connect hooks (bpf/process.h): a container's connected UDP
flows are filed once per connect(), not looked at in every packet.

TC sees a container's packets without their socket, so it finds their owner
by flow (destination, ports). A connected UDP socket's source port is bound
only after the cgroup connect hook has run, so the flow is first known in the
kernel's datagram connect: an fentry program there files it, once per
connect. Where the kernel cannot run it (no BTF; BPF trampolines need x86-64
5.5+ or arm64 6.0+; or a kernel that refuses tracing programs, as this
project's development VM does), the cgroup_skb egress program files the flow
at its first packet instead, at one socket-storage lookup in every packet of
the job.

API::

    UdpConnectHooks(program)      # a context manager; raises EnvironmentProblem when unavailable
    cgroup_programs(stack, program, who) -> the cgroup hooks to attach beside them
"""

from __future__ import annotations

import contextlib
import os

from cicd_audit import notices
from cicd_audit.errors import EnvironmentProblem
from cicd_audit.recorder.attach.held_links import HeldLinks
from cicd_audit.recorder.kernel import abi, bpf_syscall, kernel_btf

# Every UDP connect() of IPv4 and IPv6 sockets goes through one of these, on every kernel: the
# outer ip4/ip6_datagram_connect until 6.12, udp_connect/udpv6_connect (static) since 6.13. An IPv6
# socket's IPv4 peer goes through both, and is filed twice under the same key.
TRACED = ("__ip4_datagram_connect", "__ip6_datagram_connect")
# The kernel fields the hook reads, as struct ca_sock_layout names them.
KERNEL_FIELDS = {"sock_cookie": ("sock_common", "skc_cookie"),
                 "sock_protocol": ("sock", "sk_protocol"),
                 "inet_sport": ("inet_sock", "inet_sport")}
# "1": file connected UDP per packet, as where the kernel cannot run the hook (tests, troubleshooting).
PER_PACKET_ENV = "CICD_AUDIT_UDP_PER_PACKET"


def sock_layout() -> abi.SockLayout:
    """The running kernel's offsets of those fields; EnvironmentProblem when unknown."""
    try:
        return abi.SockLayout(**kernel_btf.cached_field_offsets(KERNEL_FIELDS))
    except kernel_btf.BtfUnavailable as exc:
        raise EnvironmentProblem(str(exc)) from None


class UdpConnectHooks:
    """Fill the program's sock_layout, load its connect hook for each traced function and
    attach it, until exit."""

    def __init__(self, program):
        self.program = program
        self._links = HeldLinks()

    def __enter__(self) -> UdpConnectHooks:
        fn = self.program.udp_connect_fn
        if fn is None:
            raise EnvironmentProblem("the program was built without the connect hook")
        if os.environ.get(PER_PACKET_ENV) == "1":
            raise EnvironmentProblem(f"{PER_PACKET_ENV}=1")
        try:
            ids = kernel_btf.cached_function_ids(TRACED)
        except kernel_btf.BtfUnavailable as exc:
            raise EnvironmentProblem(str(exc)) from None
        self.program.maps["sock_layout"].update(0, bytes(sock_layout()))
        try:
            for function in TRACED:
                self._links.hold(self._attach(fn, ids[function]), None, function)
        except bpf_syscall.BpfError as exc:
            self._links.release(failed=True)
            raise EnvironmentProblem(f"the kernel refused an fentry program ({exc})") from None
        return self

    @staticmethod
    def _attach(fn, function_id: int) -> int:
        """Load fn for one function and attach it; the attachment's fd holds the program."""
        prog_fd = bpf_syscall.prog_load(fn.name, fn.insns, bpf_syscall.PROG_TRACING, fn.license,
                                        expected_attach_type=bpf_syscall.ATTACH_TRACE_FENTRY,
                                        attach_btf_id=function_id)
        try:
            return bpf_syscall.raw_tracepoint_open(None, prog_fd)
        finally:
            os.close(prog_fd)

    def __exit__(self, *exc) -> None:
        self._links.release(failed=False)


def cgroup_programs(stack: contextlib.ExitStack, program, who: str) -> dict[int, int]:
    """Attach the connect hooks for as long as ``stack`` lasts and return the program's cgroup
    hooks without the per-packet one they replace; where they cannot run, say so in one line
    (``who``: the command's name) and return every cgroup hook."""
    hooks = dict(program.cgroup_programs)
    if program.udp_connect_fn is None:
        return hooks
    try:
        stack.enter_context(UdpConnectHooks(program))
    except EnvironmentProblem as exc:
        notices.say(f"{who}: connected UDP sockets are matched to their process at every packet, "
                    f"not once per connect(): {exc}")
        return hooks
    hooks.pop(bpf_syscall.ATTACH_CGROUP_INET_EGRESS, None)
    return hooks
