"""cicd_audit.lab itself: its address plan, its names, and that it leaves nothing behind,
neither after a failed build nor after a killed run (the next lab sweeps that)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from cicd_audit.lab import OTHER_V4, UNREACHABLE_V4, V4, Lab, netns, server_v4
from cicd_audit.lab.cgroups import cgroup_root, remove_cgroup
from cicd_audit.lab.naming import CGROUP, NAMESPACE, LabNames, owned_by_dead_process
from cicd_audit.lab.teardown import sweep_stale


def test_server_v4_refuses_the_plans_own_addresses():
    assert server_v4(99) == "10.99.0.99"
    for taken in (*V4, OTHER_V4, UNREACHABLE_V4):
        with pytest.raises(ValueError):
            server_v4(int(taken.rsplit(".", 1)[1]))
    with pytest.raises(ValueError):
        server_v4(255)


def test_interface_names_fit_the_kernels_15_characters_for_the_largest_pid():
    names = LabNames("4194304x99")          # pid_max on 64-bit kernels, a hundredth lab
    for name in (names.client_if, names.server_if, names.container_if, names.container_host_if):
        assert len(name) <= 15, name
    assert NAMESPACE.match(names.client_ns) and CGROUP.match(names.cgroup)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_names_of_a_dead_process_are_stale_and_ours_are_not():
    assert owned_by_dead_process(f"cat{_dead_pid()}x0c", NAMESPACE)
    assert not owned_by_dead_process(f"cat{os.getpid()}x0c", NAMESPACE)
    assert not owned_by_dead_process("cat-something-else", NAMESPACE)


def _leftovers(tag: str) -> dict[str, Path | str]:
    """A killed run's namespace, /etc/netns directory, cgroup and work directory, made by hand."""
    names = LabNames(tag)
    netns.add_namespace(names.client_ns)
    netns.set_resolver(names.client_ns, V4[1])
    cgroup = cgroup_root() / names.cgroup
    cgroup.mkdir()
    workdir = Path(tempfile.mkdtemp(prefix=names.workdir_prefix))
    return {"ns": names.client_ns, "etc": Path("/etc/netns", names.client_ns), "cgroup": cgroup, "workdir": workdir}


def _remove(made: dict[str, Path | str]) -> None:
    netns.delete_namespace(made["ns"])
    remove_cgroup(made["cgroup"])
    shutil.rmtree(made["workdir"], ignore_errors=True)


@pytest.mark.netns
def test_a_new_lab_sweeps_what_a_killed_run_left_and_nothing_of_a_live_one():
    dead = _leftovers(f"{_dead_pid()}x0")
    alive = _leftovers(f"{os.getpid()}x999")     # this process's: a lab still in use
    try:
        sweep_stale()
        assert dead["ns"] not in netns.namespaces()
        assert not dead["etc"].exists() and not dead["cgroup"].exists() and not dead["workdir"].exists()
        assert alive["ns"] in netns.namespaces()
        assert alive["etc"].exists() and alive["cgroup"].exists() and alive["workdir"].exists()
    finally:
        _remove(dead)
        _remove(alive)


@pytest.mark.netns
def test_a_lab_that_fails_while_being_built_removes_what_it_made(monkeypatch):
    made = []
    real_add = netns.add_namespace
    monkeypatch.setattr(netns, "add_namespace", lambda ns: (made.append(ns), real_add(ns)))

    def fail_on_the_server(ns, *args, **kw):
        raise RuntimeError("configuring the server failed")

    monkeypatch.setattr(netns, "configure", fail_on_the_server)
    with pytest.raises(RuntimeError, match="configuring the server failed"):
        Lab()
    assert made and not set(made) & set(netns.namespaces())
    assert not any(Path("/etc/netns", ns).exists() for ns in made)
    tag = made[0][3:-1]
    assert not (cgroup_root() / LabNames(tag).cgroup).exists()
    assert not list(Path(tempfile.gettempdir()).glob(LabNames(tag).workdir_prefix + "*"))


@pytest.mark.netns
def test_close_leaves_no_namespace_veth_cgroup_or_process():
    lab = Lab()
    lab.start_dnsmasq()
    container = lab.add_container()
    servers = lab.processes
    lab.close()
    lab.close()                                 # twice is harmless
    assert not {lab.client_ns, lab.server_ns, container.ns} & set(netns.namespaces())
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True).stdout
    assert lab.client_if not in links and lab.server_if not in links
    assert not lab.cgroup.exists() and not lab.workdir.exists()
    assert servers and all(p.poll() is not None for p in servers)
