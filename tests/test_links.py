"""BPF links: tcx on a veth, cgroup socket hooks, pins, and cleanup (recorder/attach/attach.py,
cgroup_attach.py, cleanup.py, the link commands of bpf_syscall.py).

The programs are hand-assembled two-instruction ones: `r0 = -1; exit` at TC
(TC_ACT_UNSPEC: let the packet through, to the next program) and
`r0 = 0; exit` / `r0 = 1; exit` at cgroup/connect4 (refuse / allow).

Interface indexes belong to a network namespace, so everything that attaches
or queries an interface runs in a child process inside the lab's client
namespace: this file run as a script (`python test_links.py <command> <json>`,
see `_child`). The child enters with `nsenter --net` rather than `ip netns
exec`: the latter also gives it a mount namespace with a fresh /sys, where the
host's bpffs (the pins) and cgroup tree are not visible. Cgroups are made
under the cgroup v2 mount (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a
hybrid layout) and pins under a bpffs directory of the test's own; both are
removed whatever happens.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cicd_audit.errors import CicdAuditError, EnvironmentProblem, UsageError
from cicd_audit.recorder.attach import cleanup
from cicd_audit.recorder.attach.cgroup_attach import CgroupAttachment, cgroup2_mount, cgroup_program_ids
from cicd_audit.recorder.kernel import bpf_syscall

HERE = Path(__file__).resolve()
_counter = itertools.count()


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, src << 4 | dst, off, imm)


def return_program(value: int) -> bytes:
    """r0 = value; exit."""
    return _insn(0xB7, 0, imm=value) + _insn(0x95)


TC_PASS = return_program(-1)        # TC_ACT_UNSPEC, TCX_NEXT
CONNECT_DENY = return_program(0)    # the caller's connect() fails with EPERM
CONNECT_ALLOW = return_program(1)


# -- the child: runs inside a network namespace -------------------------------------------


def _child(command: str, args: dict) -> int:
    """Commands for the child process; prints one JSON line, and with "hold" waits for stdin to close."""
    from cicd_audit.recorder.attach import attach
    if command == "attach":
        if args.get("no_tcx"):          # a kernel without tcx, as the probe sees it
            def refuse(*_a, **_k):
                raise bpf_syscall.BpfError(errno.EINVAL, "creating a BPF link: Invalid argument")
            bpf_syscall.link_create = refuse
        ingress = bpf_syscall.prog_load("cat_in", TC_PASS)
        egress = bpf_syscall.prog_load("cat_out", TC_PASS)
        pin_dir = cleanup.pin_dir_for(os.getpid(), Path(args["pin_root"])) if args.get("pin_root") else None
        try:
            with attach.TcAttachment([args["ifname"]], ingress, egress_fd=egress, pin_dir=pin_dir,
                                     mechanism=args.get("mechanism")) as att:
                print(json.dumps({"pid": os.getpid(), "mechanism": att.mechanism,
                                  "ingress": bpf_syscall.prog_info(ingress).id,
                                  "egress": bpf_syscall.prog_info(egress).id,
                                  "pin_dir": str(pin_dir) if pin_dir else None}), flush=True)
                if args.get("hold"):
                    sys.stdin.read()
        except CicdAuditError as exc:
            print(exc, file=sys.stderr)
            return 3
    elif command == "ids":
        print(json.dumps(attach.attached_program_ids(args["ifname"])))
    elif command == "remove_stale":
        print(json.dumps(cleanup.remove_stale(Path(args["pin_root"]))))
    elif command == "cleanup_all":
        print(json.dumps(cleanup.cleanup_all(Path(args["pin_root"]))))
    elif command == "connect":
        if args.get("cgroup"):
            Path(args["cgroup"], "cgroup.procs").write_text(str(os.getpid()))
        try:
            socket.create_connection((args["host"], args["port"]), timeout=5).close()
            print(json.dumps("ok"))
        except OSError as exc:
            print(json.dumps(errno.errorcode.get(exc.errno, str(exc))))
    elif command == "cgroup_deny":
        fd = bpf_syscall.prog_load("cat_deny", CONNECT_DENY, bpf_syscall.PROG_CGROUP_SOCK_ADDR,
                                   expected_attach_type=bpf_syscall.ATTACH_CGROUP_INET4_CONNECT)
        with CgroupAttachment(args["cgroup"], {bpf_syscall.ATTACH_CGROUP_INET4_CONNECT: fd}):
            print(json.dumps({"pid": os.getpid(), "prog": bpf_syscall.prog_info(fd).id}), flush=True)
            sys.stdin.read()
    return 0


def _child_argv(ns: str, command: str, **args) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{ns}", sys.executable, str(HERE), command, json.dumps(args)]


def run_child(ns: str, command: str, **args):
    r = subprocess.run(_child_argv(ns, command, **args), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


class Holder:
    """A child that attached and keeps its fds until killed or told to go (stdin closed)."""

    def __init__(self, ns: str, command: str, **args):
        self.proc = subprocess.Popen(_child_argv(ns, command, hold=True, **args), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            _, err = self.proc.communicate(timeout=30)
            raise AssertionError(f"the child did not attach (status {self.proc.returncode}): {err}")
        self.info = json.loads(line)
        assert self.info["pid"] == self.proc.pid        # nsenter execs: the pid we can kill is the holder

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def leave(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(30) == 0, self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def netlab():
    """The client/server namespace pair, without servers (cicd_audit.lab)."""
    from cicd_audit.lab import Lab
    the_lab = Lab()
    holders: list[Holder] = []
    the_lab.holders = holders
    try:
        yield the_lab
    finally:
        for h in holders:
            h.close()
        the_lab.close()


def hold(lab, command: str = "attach", **args) -> Holder:
    h = Holder(lab.client_ns, command, ifname=lab.client_if, **args)
    lab.holders.append(h)
    return h


@pytest.fixture
def pin_root():
    """A bpffs directory of this test's own; every pin under it is detached and removed afterwards."""
    root = cleanup.BPFFS / f"cicd-audit-test-{os.getpid()}-{next(_counter)}"
    cleanup.make_pin_dir(root)
    try:
        yield root
    finally:
        for directory in root.iterdir() if root.exists() else []:
            cleanup.remove_pin_dir(directory)
        if root.exists():
            root.rmdir()


@pytest.fixture
def test_cgroup():
    """A cgroup v2 directory of this test's own; its processes are killed and it is removed afterwards."""
    mount = cgroup2_mount()
    if mount is None:
        pytest.fail("no cgroup v2 mounted: the kernel is new enough to have it, so this is not skipped")
    path = mount / f"cicd-audit-test-{os.getpid()}-{next(_counter)}"
    path.mkdir()
    try:
        yield path
    finally:
        deadline = time.monotonic() + 10
        while True:
            for pid in (path / "cgroup.procs").read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                path.rmdir()
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def _server(lab) -> tuple[str, int]:
    """A listener in the server namespace; returns its address."""
    from cicd_audit.lab import HTTP_PORT, V4
    serve = (f"import socket\ns = socket.create_server(('{V4[1]}', {HTTP_PORT}))\n"
             "while True: s.accept()[0].close()\n")
    lab.popen(lab.server_ns, [sys.executable, "-c", serve], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lab.wait_listening("-ltn", f"{V4[1]}:{HTTP_PORT}")
    return V4[1], HTTP_PORT


def needs_tcx() -> None:
    """The kernel has tcx from 6.6: on such a kernel its absence is a failure, never a skip."""
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    if (major, minor) < (6, 6):
        pytest.skip(f"tcx needs kernel 6.6+, this is {os.uname().release}")


# -- tcx ----------------------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.netns
def test_tcx_links_go_away_with_a_killed_recorder(netlab):
    needs_tcx()
    h = hold(netlab, mechanism=None)
    assert h.info["mechanism"] == "tcx"
    ids = run_child(netlab.client_ns, "ids", ifname=netlab.client_if)
    assert ids == {"ingress": [h.info["ingress"]], "egress": [h.info["egress"]]}
    assert h.info["ingress"] != h.info["egress"]            # a distinct egress program
    assert "tcx ingress prog ids" in netlab.tc_filters()
    h.kill()
    assert run_child(netlab.client_ns, "ids", ifname=netlab.client_if) == {"ingress": [], "egress": []}
    assert netlab.tc_filters() == ""


@pytest.mark.root
@pytest.mark.netns
def test_tcx_detached_on_a_clean_exit_and_traffic_passes(netlab):
    needs_tcx()
    host, port = _server(netlab)
    h = hold(netlab)
    assert run_child(netlab.client_ns, "connect", host=host, port=port) == "ok"   # TC_ACT_UNSPEC: passes
    h.leave()
    assert run_child(netlab.client_ns, "ids", ifname=netlab.client_if) == {"ingress": [], "egress": []}


@pytest.mark.root
@pytest.mark.netns
def test_second_recorder_on_the_same_interface_is_refused(netlab):
    needs_tcx()
    first = hold(netlab)
    r = subprocess.run(_child_argv(netlab.client_ns, "attach", ifname=netlab.client_if),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3
    assert "already attached" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    ids = run_child(netlab.client_ns, "ids", ifname=netlab.client_if)
    assert ids == {"ingress": [first.info["ingress"]], "egress": [first.info["egress"]]}


@pytest.mark.root
@pytest.mark.netns
def test_pinned_links_outlive_the_recorder_until_remove_stale(netlab, pin_root):
    needs_tcx()
    h = hold(netlab, pin_root=str(pin_root))
    pin_dir = Path(h.info["pin_dir"])
    assert sorted(p.name for p in pin_dir.iterdir()) == [f"tcx-{netlab.client_if}-egress",
                                                         f"tcx-{netlab.client_if}-ingress"]
    # the recorder is alive: its pins are not stale
    assert run_child(netlab.client_ns, "remove_stale", pin_root=str(pin_root)) == []
    h.kill()
    ids = run_child(netlab.client_ns, "ids", ifname=netlab.client_if)
    assert ids == {"ingress": [h.info["ingress"]], "egress": [h.info["egress"]]}    # fail-closed
    lines = run_child(netlab.client_ns, "remove_stale", pin_root=str(pin_root))
    assert len(lines) == 2 and all(f"recorder {h.info['pid']} is gone" in line for line in lines), lines
    assert not pin_dir.exists()
    assert run_child(netlab.client_ns, "ids", ifname=netlab.client_if) == {"ingress": [], "egress": []}


@pytest.mark.root
@pytest.mark.netns
def test_cleanup_all_detaches_a_live_recorders_pinned_links(netlab, pin_root):
    needs_tcx()
    h = hold(netlab, pin_root=str(pin_root))
    lines = run_child(netlab.client_ns, "cleanup_all", pin_root=str(pin_root))
    assert len(lines) == 2 and all(line.startswith("detached and unpinned") for line in lines), lines
    assert "still running" in lines[0]
    # detached although the recorder still holds the link fds
    assert run_child(netlab.client_ns, "ids", ifname=netlab.client_if) == {"ingress": [], "egress": []}
    assert list(pin_root.iterdir()) == []
    h.leave()                                   # closing a detached link is fine


@pytest.mark.root
@pytest.mark.netns
def test_no_pins_in_a_bpffs_that_would_die_with_ip_netns_exec(netlab):
    """`ip netns exec` gives a mount namespace of its own with a fresh /sys: a bpffs mounted there
    vanishes with it, pins included, so --fail-closed would silently fail open. Refused instead."""
    code = ("from cicd_audit.recorder.attach import cleanup\n"
            "cleanup.make_pin_dir(cleanup.BPFFS / 'cicd-audit-never')\n")
    r = subprocess.run(["ip", "netns", "exec", netlab.client_ns, sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "EnvironmentProblem" in r.stderr and "nsenter --net" in r.stderr, r.stderr


# -- legacy TC filters --------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.netns
def test_falls_back_to_tc_filters_without_tcx(netlab):
    h = hold(netlab, no_tcx=True)
    assert h.info["mechanism"] == "tc"
    ids = run_child(netlab.client_ns, "ids", ifname=netlab.client_if)
    assert ids == {"ingress": [h.info["ingress"]], "egress": [h.info["egress"]]}
    assert "cicd_audit" in netlab.tc_filters()
    h.leave()
    assert netlab.tc_filters() == ""


@pytest.mark.root
@pytest.mark.netns
def test_legacy_filters_second_recorder_and_stale_removal(netlab, pin_root):
    h = hold(netlab, mechanism="tc")
    assert h.info["mechanism"] == "tc"
    r = subprocess.run(_child_argv(netlab.client_ns, "attach", ifname=netlab.client_if, mechanism="tc"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3
    assert r.stderr.strip() == (f"a cicd-audit program is already attached to {netlab.client_if} (another recorder "
                                f"is running there, or one was killed): stop it, or remove it with "
                                f"`tc filter del dev {netlab.client_if} ingress prio 51712`")
    # a tcx recorder refuses a legacy filter of ours too
    r = subprocess.run(_child_argv(netlab.client_ns, "attach", ifname=netlab.client_if),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "already attached" in r.stderr, r.stderr
    # a live recorder holds its filters: not stale
    assert run_child(netlab.client_ns, "remove_stale", pin_root=str(pin_root)) == []
    h.kill()
    assert "cicd_audit" in netlab.tc_filters()                     # filters survive a killed recorder
    lines = run_child(netlab.client_ns, "remove_stale", pin_root=str(pin_root))
    assert [line.split(" (")[0] for line in lines] == [
        f"removed the TC filter at priority 51712 from {netlab.client_if} ingress",
        f"removed the TC filter at priority 51712 from {netlab.client_if} egress"]
    assert netlab.tc_filters() == ""


@pytest.mark.root
@pytest.mark.netns
def test_cleanup_all_removes_a_live_recorders_legacy_filters(netlab, pin_root):
    h = hold(netlab, mechanism="tc")
    lines = run_child(netlab.client_ns, "cleanup_all", pin_root=str(pin_root))
    assert len(lines) == 2, lines
    assert netlab.tc_filters() == ""
    h.leave()                                   # its own removal finds nothing left, quietly


@pytest.mark.root
@pytest.mark.netns
def test_legacy_pin_dir_leaves_the_filters(netlab, pin_root):
    h = hold(netlab, mechanism="tc", pin_root=str(pin_root))
    h.leave()
    assert "cicd_audit" in netlab.tc_filters()
    lines = run_child(netlab.client_ns, "remove_stale", pin_root=str(pin_root))
    assert len(lines) == 2 and netlab.tc_filters() == "", lines
    assert list(pin_root.iterdir()) == []       # the empty pin directory of the dead pid went too


# -- cgroup hooks -------------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.netns
def test_cgroup_connect4_refuses_inside_the_cgroup_only(netlab, test_cgroup):
    host, port = _server(netlab)
    fd = bpf_syscall.prog_load("cat_deny", CONNECT_DENY, bpf_syscall.PROG_CGROUP_SOCK_ADDR,
                               expected_attach_type=bpf_syscall.ATTACH_CGROUP_INET4_CONNECT)
    try:
        with CgroupAttachment(test_cgroup, {bpf_syscall.ATTACH_CGROUP_INET4_CONNECT: fd}):
            assert cgroup_program_ids(test_cgroup)["connect4"] == [bpf_syscall.prog_info(fd).id]
            inside = run_child(netlab.client_ns, "connect", cgroup=str(test_cgroup), host=host, port=port)
            outside = run_child(netlab.client_ns, "connect", host=host, port=port)
            assert (inside, outside) == ("EPERM", "ok")
        assert cgroup_program_ids(test_cgroup)["connect4"] == []
        assert run_child(netlab.client_ns, "connect", cgroup=str(test_cgroup), host=host, port=port) == "ok"
    finally:
        os.close(fd)


@pytest.mark.root
@pytest.mark.netns
def test_cgroup_link_goes_away_with_a_killed_recorder(netlab, test_cgroup):
    host, port = _server(netlab)
    h = Holder(netlab.client_ns, "cgroup_deny", cgroup=str(test_cgroup))
    netlab.holders.append(h)
    assert cgroup_program_ids(test_cgroup)["connect4"] == [h.info["prog"]]
    assert run_child(netlab.client_ns, "connect", cgroup=str(test_cgroup), host=host, port=port) == "EPERM"
    h.kill()
    assert cgroup_program_ids(test_cgroup)["connect4"] == []
    assert run_child(netlab.client_ns, "connect", cgroup=str(test_cgroup), host=host, port=port) == "ok"


@pytest.mark.root
def test_cgroup_pinned_link_stays_and_cleanup_removes_it(test_cgroup, pin_root):
    fd = bpf_syscall.prog_load("cat_allow", CONNECT_ALLOW, bpf_syscall.PROG_CGROUP_SOCK_ADDR,
                               expected_attach_type=bpf_syscall.ATTACH_CGROUP_INET4_CONNECT)
    prog_id = bpf_syscall.prog_info(fd).id
    pin_dir = cleanup.pin_dir_for(999_999_999, pin_root)       # no such pid: a dead recorder's
    try:
        with CgroupAttachment(test_cgroup, {bpf_syscall.ATTACH_CGROUP_INET4_CONNECT: fd}, pin_dir=pin_dir):
            pass
    finally:
        os.close(fd)
    assert cgroup_program_ids(test_cgroup)["connect4"] == [prog_id]
    pins = [p.name for p in pin_dir.iterdir()]
    assert pins == [f"cgroup-{test_cgroup.stat().st_ino}-connect4"]
    lines = cleanup.remove_pin_dir(pin_dir, " (test)")
    assert lines == [f"detached and unpinned {pin_dir / pins[0]} (test)"]
    assert cgroup_program_ids(test_cgroup)["connect4"] == []


@pytest.mark.root
def test_cgroup_attachment_removes_what_it_added_on_failure(test_cgroup):
    good = bpf_syscall.prog_load("cat_allow", CONNECT_ALLOW, bpf_syscall.PROG_CGROUP_SOCK_ADDR,
                                 expected_attach_type=bpf_syscall.ATTACH_CGROUP_INET4_CONNECT)
    wrong = bpf_syscall.prog_load("cat_tc", TC_PASS)            # a TC program cannot go on a cgroup hook
    try:
        attachment = CgroupAttachment(test_cgroup, {bpf_syscall.ATTACH_CGROUP_INET4_CONNECT: good,
                                                    bpf_syscall.ATTACH_CGROUP_INET6_CONNECT: wrong})
        with pytest.raises(EnvironmentProblem, match="cannot attach the connect6 program to cgroup"):
            attachment.__enter__()
        assert cgroup_program_ids(test_cgroup) == {name: [] for name in cgroup_program_ids(test_cgroup)}
    finally:
        os.close(good)
        os.close(wrong)


def test_missing_cgroup_path_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no cgroup directory"):
        CgroupAttachment(tmp_path / "nope", {}).__enter__()


def test_a_directory_outside_cgroup2_is_refused_clearly(tmp_path):
    with pytest.raises(EnvironmentProblem, match=f"{tmp_path} is not a cgroup v2 directory"):
        CgroupAttachment(tmp_path, {}).__enter__()
    (tmp_path / "file").write_text("")
    with pytest.raises(EnvironmentProblem, match="is not a cgroup v2 directory"):
        CgroupAttachment(tmp_path / "file", {}).__enter__()


# -- bpf_syscall --------------------------------------------------------------------------


@pytest.mark.root
def test_prog_query_and_pin_round_trip(test_cgroup, pin_root):
    fd = bpf_syscall.prog_load("cat_allow", CONNECT_ALLOW, bpf_syscall.PROG_CGROUP_SOCK_ADDR,
                               expected_attach_type=bpf_syscall.ATTACH_CGROUP_INET4_CONNECT)
    dir_fd = os.open(test_cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        info = bpf_syscall.prog_info(fd)
        assert (info.type, info.name) == (bpf_syscall.PROG_CGROUP_SOCK_ADDR, "cat_allow")
        assert bpf_syscall.prog_info_by_id(info.id) == info
        link = bpf_syscall.link_create(fd, dir_fd, bpf_syscall.ATTACH_CGROUP_INET4_CONNECT)
        bpf_syscall.obj_pin(link, pin_root / "link")
        os.close(link)
        assert bpf_syscall.prog_query(dir_fd, bpf_syscall.ATTACH_CGROUP_INET4_CONNECT) == [info.id]
        again = bpf_syscall.obj_get(pin_root / "link")
        os.unlink(pin_root / "link")
        assert bpf_syscall.prog_query(dir_fd, bpf_syscall.ATTACH_CGROUP_INET4_CONNECT) == [info.id]
        os.close(again)                         # the last reference: detached
        assert bpf_syscall.prog_query(dir_fd, bpf_syscall.ATTACH_CGROUP_INET4_CONNECT) == []
        with pytest.raises(bpf_syscall.BpfError, match="opening the pinned"):
            bpf_syscall.obj_get(pin_root / "link")
    finally:
        os.close(dir_fd)
        os.close(fd)


@pytest.mark.root
def test_sock_addr_program_needs_its_expected_attach_type():
    with pytest.raises(bpf_syscall.BpfError, match="cat_noattach"):
        bpf_syscall.prog_load("cat_noattach", CONNECT_ALLOW, bpf_syscall.PROG_CGROUP_SOCK_ADDR)


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1], json.loads(sys.argv[2])))
