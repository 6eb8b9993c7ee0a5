#!/usr/bin/env python3
"""Boot Debian's and Ubuntu's own kernels with virtme-ng and run cicd-audit's smoke suite in each.

One script of ~600 lines on purpose: the host side (download, boot) and the guest
side (the checks) run as the same file, from the host's root mounted read-only.

    scripts/kernel_matrix.py [--kernels newest,6.1,5.10] [--table docs/kernels.md]

For each kernel: download the distribution's kernel image (unsigned) and modules with a
private apt state (the host's apt sources, lists and caches stay untouched),
unpack it under CACHE (/var/cache/cicd-audit/kernels), boot it with
virtme-ng against the host's root, read-only, and run `kernel_matrix.py
--guest` inside. Nothing is installed to the host's /boot or /lib/modules.

The guest suite (each check prints one `CHECK name ok|FAIL detail` line):
  load      every program variant (pcap, pcap -C, live, live --block), compiled
            once on the host by bcc and loaded in the guest by the syscall
            loader: the same bytecode on every kernel, no compiler in the guest
            (the guest's program cache is seeded with it, so `record` loads it too)
  names     blocking's DNS name check in the kernel (tests/test_dns_name_check.py)
  exec      the exec hooks: a process's executable is known after it exits, from
            fields found in the guest kernel's BTF (tests/test_exec_hooks.py)
  udp       connected UDP sockets filed once per connect by the fentry hook (IPv4, IPv6,
            an IPv4 peer of an IPv6 socket, a reconnect), the per-packet program left off
  pcap      `record --pcap` of ../shared/zeek-oracle/wikipedia matches Zeek's logs; an A-MSDU's
            subframes and a sweep request, each a chain of tail calls
  live      `record` in a network-namespace lab: curl's and Python's rows name their process
  block     `record --block` there: an allowed name connects, a raw address and an
            unlisted name are refused (NXDOMAIN from the recorder), both logged
The checks are the repository's own tests, run by pytest inside the guest.

KVM is used where /dev/kvm can boot a stock kernel (probed with a short boot),
else TCG (--disable-kvm, about ten times slower). One guest at a time.
The host's own kernel (--host) runs the same suite without a VM.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("CICD_AUDIT_KERNEL_CACHE", "/var/cache/cicd-audit/kernels"))
VENV = Path(os.environ.get("CICD_AUDIT_VENV", "/opt/cicd-audit/venv"))
VNG = Path(os.environ.get("CICD_AUDIT_VNG", "/opt/cicd-audit/vng/bin/vng"))
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
UBUNTU_MIRROR = os.environ.get("CICD_AUDIT_UBUNTU_MIRROR", "http://archive.ubuntu.com/ubuntu")
GUEST_MEMORY = "2G"
GUEST_TIMEOUT_S = 1500        # 5.10 under TCG needs ~15 min for the whole suite


@dataclass(frozen=True)
class KernelSource:
    """A kernel series and the suite whose generic kernel (Debian's linux-image-amd64,
    Ubuntu's linux-image-generic) picks it."""

    series: str
    suite: str
    distribution: str       # for the support table
    archive: str = "debian"  # or "ubuntu"

    @property
    def meta_package(self) -> str:
        return "linux-image-generic" if self.archive == "ubuntu" else "linux-image-amd64"


KERNELS = {
    "5.10": KernelSource("5.10", "bullseye", "Debian 11 (Amazon Linux 2 runs 5.10)"),
    "6.1": KernelSource("6.1", "bookworm", "Debian 12"),
    "6.12": KernelSource("6.12", "trixie", "Debian 13"),
    # UDP's connect() has its own function since 6.13 (udp_connect): the newest kernel keeps us honest there.
    "newest": KernelSource("newest", "trixie-backports", "Debian 13 backports (Ubuntu 24.04 HWE runs 6.14+)"),
    # The kernels most self-hosted runners boot: Ubuntu's own builds (their configs, their patches).
    "ubuntu-24.04": KernelSource("ubuntu-24.04", "noble-updates", "Ubuntu 24.04 (its GA kernel)", "ubuntu"),
    "ubuntu-22.04": KernelSource("ubuntu-22.04", "jammy-updates", "Ubuntu 22.04 (its GA kernel)", "ubuntu"),
}
DEFAULT_KERNELS = "newest,6.1,5.10"


# -- downloading --------------------------------------------------------------------

def debian_mirror() -> str:
    """The Debian mirror the host's apt already uses (only read, never changed), else Debian's own."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and line.rstrip().endswith("/debian"):
                return line.split(None, 1)[1].strip()
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        if path.exists():
            for line in path.read_text().splitlines():
                match = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s", line)
                if match:
                    return match.group(1)
    return "http://deb.debian.org/debian"      # an Ubuntu host: Debian's own (debian-archive-keyring verifies it)


def _apt_options(state: Path) -> list[str]:
    """A private apt state under state/: sources, lists and caches of its own."""
    return ["-o", f"Dir::Etc::sourcelist={state / 'sources.list'}", "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Dir::State::Lists={state / 'lists'}", "-o", f"Dir::Cache={state / 'cache'}",
            "-o", f"Dir::State::status={state / 'status'}", "-o", "APT::Get::List-Cleanup=0",
            "-o", "APT::Sandbox::User=root"]


def cached_kernel(source: KernelSource) -> Path:
    """The suite's kernel as last downloaded (no network: for tests); SystemExit if there is none."""
    remembered = CACHE / "apt" / source.suite / "release"
    if remembered.exists():
        release = remembered.read_text().strip()
        vmlinuz = CACHE / release / "boot" / f"vmlinuz-{release}"
        if vmlinuz.exists():
            return vmlinuz
    raise SystemExit(f"{source.suite}: no kernel downloaded yet: run scripts/kernel_matrix.py --download-only "
                     f"--kernels {source.series} (scripts/install.sh --test does)")


def _image_packages(release: str, apt: list[str]) -> list[str]:
    """The packages holding the image without its secure-boot signature, and the modules.
    Up to Debian 13 one package holds both (linux-image-R-unsigned); its backports split
    them into linux-binary-unsigned-R, linux-modules-R and linux-base-R (config, modules.builtin),
    all under /usr/lib/modules; Ubuntu into linux-image-unsigned-R and linux-modules-R."""
    def known(package: str) -> bool:
        return subprocess.run(["apt-cache", *apt, "show", package], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0
    layouts = ([f"linux-image-{release}-unsigned"],
               [f"linux-binary-unsigned-{release}", f"linux-modules-{release}", f"linux-base-{release}"],
               [f"linux-image-unsigned-{release}", f"linux-modules-{release}"])
    for packages in layouts:
        if all(known(package) for package in packages):
            return packages
    raise SystemExit(f"{release}: no package set holds its image and modules: "
                     + "; ".join(", ".join(packages) for packages in layouts))


def _unpack(debs: list[Path], release: str, unpacked: Path) -> None:
    """Lay the packages out as root/boot/vmlinuz-R and root/lib/modules/R, as older images come."""
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
    usr_modules = unpacked / "usr" / "lib" / "modules" / release
    if usr_modules.is_dir():
        (unpacked / "lib" / "modules").mkdir(parents=True, exist_ok=True)
        usr_modules.rename(unpacked / "lib" / "modules" / release)
    modules = unpacked / "lib" / "modules" / release
    (unpacked / "boot").mkdir(exist_ok=True)
    for name, target in (("vmlinuz.unsigned", "vmlinuz"), ("vmlinuz", "vmlinuz"), ("config", "config"),
                         ("System.map", "System.map")):
        if (modules / name).exists():
            (modules / name).rename(unpacked / "boot" / f"{target}-{release}")
    if not (unpacked / "boot" / f"vmlinuz-{release}").exists():
        raise SystemExit(f"{release}: the packages hold no kernel image")


def _apt_state(state: Path, source_line: str) -> tuple[list[str], subprocess.CompletedProcess]:
    """A private apt state with one source, updated; its options and the update's result."""
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "status").touch()
    (state / "sources.list").write_text(source_line + "\n")
    apt = _apt_options(state)
    updated = subprocess.run(["apt-get", "-q", *apt, "update"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    return apt, updated


def ubuntu_keyring(debian: str) -> Path:
    """Ubuntu's archive keyring, from Debian's own ubuntu-keyring package (Debian 13 has it; the
    host's keyring verifies Debian's archive, that package verifies Ubuntu's). Unpacked under CACHE."""
    keyring = CACHE / "keyrings" / "ubuntu-archive-keyring.gpg"
    if keyring.exists():
        return keyring
    apt, updated = _apt_state(CACHE / "apt" / "ubuntu-keyring",
                              f"deb [signed-by={KEYRING}] {debian} trixie main")
    if updated.returncode != 0:
        raise SystemExit(f"ubuntu-keyring: apt-get update failed: {updated.stderr.strip()}")
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        subprocess.run(["apt-get", "-q", *apt, "download", "ubuntu-keyring"], check=True, cwd=tmp,
                       stdout=subprocess.DEVNULL)
        (deb,) = Path(tmp).glob("ubuntu-keyring_*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "root")], check=True)
        keyring.parent.mkdir(exist_ok=True)
        shutil.copyfile(Path(tmp) / "root" / "usr" / "share" / "keyrings" / keyring.name, keyring)
    return keyring


def download_kernel(source: KernelSource, mirror: str) -> Path:
    """Unpack the suite's current generic kernel under CACHE; returns its vmlinuz. mirror: Debian's."""
    state = CACHE / "apt" / source.suite
    if source.archive == "ubuntu":
        line = f"deb [signed-by={ubuntu_keyring(mirror)}] {UBUNTU_MIRROR} {source.suite} main"
    else:
        line = f"deb [signed-by={KEYRING}] {mirror} {source.suite} main"
    apt, updated = _apt_state(state, line)
    apt += ["-o", "APT::Architecture=amd64"]
    remembered = state / "release"           # the suite's kernel when last looked up
    if updated.returncode != 0:
        if remembered.exists() and (CACHE / remembered.read_text().strip()).is_dir():
            release = remembered.read_text().strip()
            print(f"{source.suite}: the mirror is out of reach; using the cached {release}", file=sys.stderr)
            return CACHE / release / "boot" / f"vmlinuz-{release}"
        raise SystemExit(f"{source.suite}: apt-get update failed: {updated.stderr.strip()}")
    shown = subprocess.run(["apt-cache", *apt, "depends", source.meta_package], check=True,
                           capture_output=True, text=True).stdout
    match = re.search(r"Depends: linux-image-(\d\S+-(?:amd64|generic))\b", shown)
    if not match:
        raise SystemExit(f"{source.suite}: {source.meta_package} depends on no kernel image")
    release = match.group(1)
    remembered.write_text(release + "\n")
    root = CACHE / release
    vmlinuz = root / "boot" / f"vmlinuz-{release}"
    if vmlinuz.exists():
        return vmlinuz
    debs = state / "debs"
    debs.mkdir(exist_ok=True)
    packages = _image_packages(release, apt)
    missing = [package for package in packages if not list(debs.glob(f"{package}_*.deb"))]
    if missing:
        subprocess.run(["apt-get", "-q", *apt, "download", *missing], check=True, cwd=debs, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        unpacked = Path(tmp) / "root"
        _unpack([next(debs.glob(f"{package}_*.deb")) for package in packages], release, unpacked)
        # virtme-ng finds the modules next to the image (root/lib/modules/RELEASE)
        # and needs modules.dep, which the package leaves to its postinst.
        subprocess.run([shutil.which("depmod") or "/usr/sbin/depmod", "-b", str(unpacked), release], check=True)
        if root.exists():
            shutil.rmtree(root)
        unpacked.rename(root)
    return vmlinuz


# -- the bytecode every guest loads ---------------------------------------------------

def variant_slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def prebuild(directory: Path) -> None:
    """Compile every prepared variant once, here, with bcc: the guests load these same instructions."""
    from cicd_audit.recorder.kernel import bpf_program, kernel_headers, program_cache

    headers = kernel_headers.choose_headers()
    for label, settings in bpf_program.PREPARED_SETTINGS.items():
        program_cache.store(variant_slug(label), bpf_program.compile_program(settings, headers), directory)


# -- inside the guest --------------------------------------------------------------------

def check(name: str, ok: bool, detail: str = "") -> bool:
    line = " ".join(detail.split())[:400]
    print(f"CHECK {name} {'ok' if ok else 'FAIL'} {line}", flush=True)
    return ok


def guest_load(directory: Path) -> bool:
    """Load every function of every variant with the syscall loader; a refusal names its function."""
    from cicd_audit.recorder.kernel import bpf_program, bpf_syscall, program_cache

    all_ok = True
    for label in bpf_program.PREPARED_SETTINGS:
        program = program_cache.load(variant_slug(label), directory)
        started = time.monotonic()
        try:
            maps, functions = bpf_program.load_into_kernel(program)
        except bpf_syscall.BpfError as exc:
            all_ok &= check(f"load[{variant_slug(label)}]", False, str(exc))
            continue
        bpf_program.unload(maps, functions)       # the fentry hook is loaded when attached: the udp check
        all_ok &= check(f"load[{variant_slug(label)}]", True,
                        f"{len(functions)} functions in {time.monotonic() - started:.1f} s")
    return all_ok


def guest_stats(directory: Path) -> bool:
    """What the verifier walks for each function of the blocking variant (the largest)."""
    from cicd_audit.recorder.attach import udp_connect_hooks
    from cicd_audit.recorder.kernel import bpf_program, bpf_syscall, kernel_btf, program_cache

    program = program_cache.load(variant_slug("live --block"), directory)
    maps = {spec.name: bpf_program.BpfMap(spec, bpf_syscall.map_create(
        spec.type, spec.key_size, spec.value_size, spec.max_entries, spec.flags, spec.name)) for spec in program.maps}
    all_ok = True
    try:
        for f in program.functions:
            insns = bpf_syscall.patch_map_fds(f.insns, [(i, maps[name].fd) for i, name in f.map_refs])
            prog_type, attach_type = bpf_program.FUNCTION_TYPES.get(f.name, bpf_program._SCHED_CLS)
            if prog_type == bpf_syscall.PROG_SOCK_OPS:
                attach_type = 0
            try:
                target = 0
                if prog_type == bpf_syscall.PROG_TRACING:      # checked against the function it traces
                    target = kernel_btf.cached_function_ids(udp_connect_hooks.TRACED)[udp_connect_hooks.TRACED[0]]
                line = bpf_syscall.verifier_stats(f.name, insns, prog_type, program.license, attach_type, target)
                all_ok &= check(f"verifier[{f.name}]", True, line)
            except (bpf_syscall.BpfError, kernel_btf.BtfUnavailable) as exc:
                all_ok &= check(f"verifier[{f.name}]", False, str(exc))
    finally:
        for m in maps.values():
            m.close()
    return all_ok


def seed_program_cache(directory: Path) -> None:
    """Store the host's compile of each variant under the key this kernel's `record` looks up,
    so the recorder loads the shipped bytecode instead of compiling."""
    from cicd_audit.recorder.kernel import bpf_program, kernel_headers, program_cache

    headers = kernel_headers.choose_headers()
    for label, settings in bpf_program.PREPARED_SETTINGS.items():
        program_cache.store(bpf_program.program_key(settings, headers),
                            program_cache.load(variant_slug(label), directory))


# Each smoke check made of the repository's tests: their node ids under tests/.
PYTEST_CHECKS = {
    "names": ["test_dns_name_check.py"],
    "exec": ["test_exec_hooks.py"],
    "pcap": ["test_oracle.py::test_matches_zeek[wikipedia]", "test_oracle.py::test_dns_uids_join_conn_rows[wikipedia]",
             "test_bulk_replay.py::test_pcapng_with_sections_interfaces_and_other_blocks_writes_the_reference_logs",
             # an A-MSDU's subframes, each a run of the decap stage, up to the kernel's tail-call limit
             "test_tunnels.py::test_every_subframe_of_an_aruba_a_msdu_is_a_packet_of_its_own",
             "test_tunnels.py::test_subframes_past_what_one_packet_s_tail_calls_reach_are_reported",
             # a full sweep request: 31 tail calls, within every kernel's limit
             "test_conn_tables.py::test_a_sweep_request_runs_a_key_a_tail_call_and_a_request_cut_short_is_sent_again_"
             "in_halves[whole-requests]"],
}

# live and block run here, not through tests/test_*_live.py: those time their servers'
# start-up (15 s) and the blocking verdicts (< 0.5 s) for a real machine, and a guest
# without KVM runs ten times slower. The lab is the demo's and the tests' (cicd_audit.lab);
# the servers are busybox httpd and dnsmasq, which start in a second even there.
SERVER_START_S = 90
ALLOWED_NAME, REFUSED_NAME, HTTP_PORT = "allowed.matrix.test", "refused.matrix.test", 8080


def _lab_servers(lab, other_ip: str) -> None:
    """busybox httpd on the internet side's two addresses, dnsmasq answering *.matrix.test."""
    from cicd_audit.lab import V4

    www = Path(tempfile.mkdtemp(prefix="kernel-matrix-www-"))
    (www / "index.html").write_text("ok\n")
    for ip in (V4[1], other_ip):
        lab.popen(lab.server_ns, ["busybox", "httpd", "-f", "-p", f"{ip}:{HTTP_PORT}", "-h", str(www)])
    lab.popen(lab.server_ns, ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
                             "--pid-file=", "--bind-interfaces", f"--listen-address={V4[1]}",
                             "--except-interface=lo", "--user=root", "--group=root",
                             f"--address=/matrix.test/{V4[1]}"])
    deadline = time.monotonic() + SERVER_START_S
    want = [f"{V4[1]}:{HTTP_PORT}", f"{other_ip}:{HTTP_PORT}", f"{V4[1]}:53"]
    while time.monotonic() < deadline:
        listening = lab.run(lab.server_ns, ["ss", "-H", "-ltn"]).stdout
        if all(w in listening for w in want):
            return
        time.sleep(0.5)
    raise RuntimeError(f"servers not listening after {SERVER_START_S} s: {want}")


def _record(lab, out: Path, script: str, *extra: str) -> subprocess.CompletedProcess:
    cli = str(VENV / "bin" / "cicd-audit")
    argv = [cli, "record", "--out", str(out), "--iface", lab.client_if, *lab.cgroup_option(), *extra, "--",
            *lab.in_cgroup(["sh", "-c", script])]
    return lab.run(lab.client_ns, argv, timeout=600)


def _rows(out: Path, name: str) -> list[dict]:
    from cicd_audit.zeeklog.reader import read_log
    path = out / f"{name}.log"
    return list(read_log(path)[1]) if path.exists() else []


def guest_live_and_block(checks: list[str]) -> bool:
    """live: curl's connection is in conn.log with its process; block: an allowed name
    connects, a raw address and an unlisted name are refused, and notice.log says so."""
    from cicd_audit.lab import V4, Lab, server_v4

    all_ok = True
    with Lab() as lab:
        other_ip = server_v4(9)
        lab.add_server_address(other_ip)
        lab.set_resolver(lab.client_ns, "timeout:5 attempts:2")
        _lab_servers(lab, other_ip)
        def curl(host: str) -> str:
            return f"curl -s -o /dev/null --max-time 20 -w %{{http_code}} http://{host}:{HTTP_PORT}/"
        work = Path(tempfile.mkdtemp(prefix="kernel-matrix-logs-"))
        if "live" in checks:
            done = _record(lab, work / "live", "echo $(" + curl(V4[1]) + ")")
            web = [c for c in _rows(work / "live", "conn") if c["id.resp_p"] == HTTP_PORT]
            problems = [] if done.returncode == 0 else [f"record exited {done.returncode}: {done.stderr[-300:]}"]
            if done.stdout.strip() != "200":
                problems.append(f"curl got {done.stdout.strip()!r}")
            if not web or web[0]["proc.name"] != "curl" or web[0]["conn_state"] != "SF":
                problems.append(f"conn.log rows to :{HTTP_PORT}: {[(c['proc.name'], c['conn_state']) for c in web]}")
            all_ok &= check("live", not problems, "; ".join(problems) or "curl's row names curl, state SF")
        if "block" in checks:
            policy = work / "policy.yml"
            policy.write_text(f"allowed:\n  domains: [{ALLOWED_NAME}]\n")
            script = "; ".join([f"echo allowed $({curl(ALLOWED_NAME)})", f"echo raw $({curl(other_ip)})",
                                f"echo unlisted $(dig +tries=1 +time=5 {REFUSED_NAME} | grep -oE 'status: [A-Z]+')"])
            done = _record(lab, work / "block", script, "--block", "--policy", str(policy),
                           "--resolver", V4[1])
            seen = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines() if " " in line)
            notes = {n["note"] for n in _rows(work / "block", "notice")}
            problems = [] if done.returncode == 0 else [f"record exited {done.returncode}: {done.stderr[-300:]}"]
            if seen.get("allowed") != "200":
                problems.append(f"allowed name got {seen.get('allowed')!r}")
            if seen.get("raw") != "000":
                problems.append(f"raw address got {seen.get('raw')!r}")
            if seen.get("unlisted") != "status: NXDOMAIN":
                problems.append(f"unlisted name got {seen.get('unlisted')!r}")
            if not {"CicdAudit::Blocked_Connection", "CicdAudit::Blocked_DNS_Query"} <= notes:
                problems.append(f"notice.log has {sorted(notes)}")
            all_ok &= check("block", not problems, "; ".join(problems)
                            or "allowed name 200, raw address refused, unlisted name NXDOMAIN, both in notice.log")
    return all_ok


def guest_pytest(checks: list[str]) -> bool:
    """Run the checks' tests in one pytest; one CHECK line per check."""
    import xml.etree.ElementTree as ET

    wanted = [c for c in checks if c in PYTEST_CHECKS]
    if not wanted:
        return True
    report = Path(tempfile.mkdtemp(prefix="kernel-matrix-")) / "junit.xml"
    nodes = [f"tests/{node}" for c in wanted for node in PYTEST_CHECKS[c]]
    started = time.monotonic()
    sys.stdout.flush()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=6",
                    f"--junitxml={report}", *nodes], cwd=REPO, stderr=subprocess.STDOUT)
    outcome = {}
    if report.exists():
        for case in ET.parse(report).iter("testcase"):
            problem = next(iter(case), None)
            name = f"{Path(case.get('classname', '').replace('.', '/')).name}.py::{case.get('name')}"
            outcome[name] = (problem.tag if problem is not None else "passed",
                             (problem.get("message") or "") if problem is not None else "")
    all_ok = True
    for c in wanted:
        mine = {name: result for name, result in outcome.items()
                if any(name == node or name.startswith(node + "::") or name.startswith(node + "[")
                       for node in PYTEST_CHECKS[c])}
        bad = [f"{name}: {kind} {message[:200]}" for name, (kind, message) in mine.items() if kind != "passed"]
        bad += [f"{node}: not run" for node in PYTEST_CHECKS[c]
                if not any(name == node or name.startswith(node + "::") for name in mine)]
        all_ok &= check(c, not bad, "; ".join(bad) if bad else f"{len(mine)} tests passed")
    print(f"PYTEST {time.monotonic() - started:.0f} s", flush=True)
    return all_ok


# A child in the test cgroup: connected UDP sockets to the discard port (nothing listens; a
# connect() sends nothing), one "family host port" line per connect with the port it was bound to.
UDP_CONNECTS = """
import socket, sys
open(sys.argv[1], "w").write("0")          # into the cgroup the hooks are on
def connect(family, host, port, s=None):
    s = s or socket.socket(family, socket.SOCK_DGRAM)
    s.connect((host, port))
    print(family.name, host, port, s.getsockname()[1], flush=True)
    return s
connect(socket.AF_INET, "127.0.0.1", 9)
connect(socket.AF_INET6, "::1", 9)
connect(socket.AF_INET6, "::ffff:127.0.0.1", 9)         # an IPv4 peer of an IPv6 socket
s = connect(socket.AF_INET, "127.0.0.2", 9)
connect(socket.AF_INET, "127.0.0.2", 10, s)             # the same socket, connected again
"""


def guest_udp_connect() -> bool:
    """udp: the per-connect hook (fentry on the kernel's datagram connect) files each connected
    UDP socket's flow under the process that connected it, and the per-packet cgroup_skb
    program is then left off. Loopback only: a connect() sends nothing."""
    import contextlib
    import ipaddress

    from cicd_audit import notices
    from cicd_audit.recorder.attach import udp_connect_hooks
    from cicd_audit.recorder.attach.cgroup_attach import CgroupAttachment, cgroup2_mount
    from cicd_audit.recorder.kernel import abi, bpf_syscall
    from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings

    v2_root = cgroup2_mount()
    if v2_root is None:
        return check("udp", False, "no cgroup v2 hierarchy is mounted")
    cgroup = v2_root / f"cicd-audit-matrix-udp-{os.getpid()}"
    cgroup.mkdir()
    program = CaptureProgram(ProgramSettings(pcap_mode=False, attribution=True), lambda data, size: None)
    try:
        with contextlib.ExitStack() as stack:
            said: list[str] = []
            previous = notices.set_sink(said.append)
            try:
                hooks = udp_connect_hooks.cgroup_programs(stack, program, "kernel-matrix")
            finally:
                notices.set_sink(previous)
            if bpf_syscall.ATTACH_CGROUP_INET_EGRESS in hooks:
                return check("udp", False, "; ".join(said) or "the connect hook did not attach")
            stack.enter_context(CgroupAttachment(cgroup, hooks))
            child = subprocess.Popen([sys.executable, "-c", UDP_CONNECTS, str(cgroup / "cgroup.procs")],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = child.communicate(timeout=300)
        if child.returncode != 0:
            return check("udp", False, f"the connecting child failed: {err.strip()[-300:]}")
        bad, lines = [], out.splitlines()
        for line in lines:
            family, host, port, sport = line.split()
            addr = ipaddress.ip_address(host)
            mapped = addr.packed if addr.version == 6 else ipaddress.IPv6Address(f"::ffff:{host}").packed
            key = abi.FlowKey(dport=int(port), sport=int(sport), ip_proto=17)
            key.daddr[:] = mapped
            raw = program.maps["flow_owner"].lookup(bytes(key))
            owner = abi.Process.from_buffer_copy(raw).tgid if raw else None
            if owner != child.pid:
                bad.append(f"{family} {host}:{port} from port {sport}: filed under {owner}")
        return check("udp", len(lines) == 5 and not bad, "; ".join(bad) or f"{len(lines)} connects filed")
    finally:
        program.close()
        cgroup.rmdir()


GUEST_MODULES = Path("/tmp/kernel-matrix-modules")


def link_guest_modules() -> None:
    """Point /lib/modules/RELEASE at the modules exported by run_guest(): virtme-ng links it
    to their host path, which the guest's tmpfs over /var/cache hides (and modprobe of
    veth, sch_ingress, ... would fail)."""
    target = Path("/lib/modules") / os.uname().release
    if GUEST_MODULES.is_dir() and not (target / "modules.dep").exists():
        if target.is_symlink():
            target.unlink()
        target.symlink_to(GUEST_MODULES)


def guest_main(directory: Path, checks: list[str]) -> int:
    print(f"GUEST {os.uname().release}", flush=True)
    link_guest_modules()
    ok = True
    if "load" in checks:
        ok &= guest_load(directory)
    if "stats" in checks:
        ok &= guest_stats(directory)
    seed_program_cache(directory)
    ok &= guest_pytest(checks)
    if "udp" in checks:
        ok &= guest_udp_connect()
    if "live" in checks or "block" in checks:
        try:
            ok &= guest_live_and_block(checks)
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            for name in ("live", "block"):
                if name in checks:
                    ok &= check(name, False, f"lab: {exc}")
    return 0 if ok else 1


# -- on the host: booting, and the table ---------------------------------------------------

CHECKS = ("load", "names", "exec", "udp", "pcap", "live", "block")


def kvm_boots(vmlinuz: Path) -> bool:
    """Whether /dev/kvm boots a stock kernel here (PVM's does not: qemu fails in seconds)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    try:
        done = subprocess.run([str(VNG), "-r", str(vmlinuz), "--memory", "512M", "--exec", "echo kvm-boots"],
                              capture_output=True, text=True, timeout=120, env=_vng_env())
    except subprocess.TimeoutExpired:
        return False
    return "kvm-boots" in done.stdout


def _vng_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{VNG.parent}:{env.get('PATH', '/usr/bin:/bin')}:/usr/sbin:/sbin"
    return env


@dataclass
class KernelResult:
    series: str
    release: str
    distribution: str
    accel: str
    seconds: float
    checks: dict            # name -> (ok, detail)
    dns_name_insns: str = ""


def parse_checks(output: str) -> tuple[dict, str]:
    """{check: (ok, what failed)} from the guest's CHECK lines (load[VARIANT] folded into load),
    and the instructions the verifier walked for ca_dns_name."""
    checks, insns = {}, ""
    for line in output.splitlines():
        m = re.match(r"CHECK (\S+) (ok|FAIL) ?(.*)", line)
        if not m:
            continue
        name, verdict, detail = m.groups()
        if name.startswith("verifier["):
            if name == "verifier[ca_dns_name]":
                insns = (re.search(r"processed (\d+) insns", detail) or [None, ""])[1]
            continue
        key = "load" if name.startswith("load[") else name
        ok, failures = checks.get(key, (True, ""))
        if verdict == "FAIL":
            ok, failures = False, "; ".join(filter(None, [failures, f"{name}: {detail}"]))
        checks[key] = (ok, failures)
    return checks, insns


def run_guest(vmlinuz: Path, bytecode: Path, accel: str, checks: list[str], log: Path) -> tuple[str, float]:
    guest_dir = "/tmp/kernel-matrix-bytecode"
    argv = [str(VNG), "-r", str(vmlinuz), "--memory", GUEST_MEMORY, "--cpus", "2",
            f"--rodir={guest_dir}={bytecode}",
            f"--rodir={GUEST_MODULES}={vmlinuz.parent.parent / 'lib' / 'modules' / vmlinuz.name[len('vmlinuz-'):]}",
            "--exec", f"{VENV / 'bin' / 'python'} {REPO / 'scripts' / 'kernel_matrix.py'} --guest {guest_dir} "
                      f"--checks {','.join(checks)}"]
    if accel == "tcg":
        argv.insert(1, "--disable-kvm")
    started = time.monotonic()
    output, status = _boot(argv)
    if not output.strip():
        # Once in a CI run (2026-12-07) vng exited at once with no output at all, not even the
        # kernel's: the VM never started and nothing was checked. Booted again, and the log says so.
        output = f"vng exited with status {status} and no output at all; booted again\n" + _boot(argv)[0]
    log.write_text(output)
    return output, time.monotonic() - started


def _boot(argv: list[str]) -> tuple[str, int | None]:
    """One guest run: its output (console and vng's own), and vng's exit status (None: timed out)."""
    try:
        done = subprocess.run(["nice", "-n", "10", *argv], capture_output=True, text=True, timeout=GUEST_TIMEOUT_S,
                              env=_vng_env(), cwd=REPO)
    except subprocess.TimeoutExpired as exc:
        return (exc.stdout or b"").decode(errors="replace") + f"\nguest timed out after {GUEST_TIMEOUT_S} s", None
    return done.stdout + done.stderr, done.returncode


def run_host(bytecode: Path, checks: list[str], log: Path) -> tuple[str, float]:
    started = time.monotonic()
    done = subprocess.run([str(VENV / "bin" / "python"), str(REPO / "scripts" / "kernel_matrix.py"),
                           "--guest", str(bytecode), "--checks", ",".join(checks)],
                          capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "CICD_AUDIT_CACHE": tempfile.mkdtemp(prefix="kernel-matrix-cache-")})
    output = done.stdout + done.stderr
    log.write_text(output)
    return output, time.monotonic() - started


CHECK_TITLES = {"load": "all programs load (same bytecode)", "names": "DNS name check",
                "exec": "exec hooks (proc.exe after exit)", "udp": "connected UDP filed per connect (fentry)",
                "pcap": "`record --pcap` = Zeek", "live": "live + attribution", "block": "`--block`"}


def write_table(results: list[KernelResult], path: Path) -> None:
    lines = [
        "# Kernel support",
        "",
        "Generated by `scripts/kernel_matrix.py` from its last run: Debian's and Ubuntu's own kernels booted",
        "with virtme-ng against the host's root (read-only), each running the smoke suite",
        "described in the script's header; the host's own kernel runs it without a VM.",
        "The bytecode is compiled once, on the host, and the same instructions load on every kernel.",
        "",
        "| kernel | distribution | " + " | ".join(CHECK_TITLES[c] for c in CHECKS)
        + " | ca_dns_name: insns the verifier walked | VM | time |",
        "|---|---|" + "---|" * len(CHECKS) + "---|---|---|",
    ]
    for r in results:
        cells = []
        for c in CHECKS:
            ok, detail = r.checks.get(c, (None, ""))
            if ok is None:
                cells.append(_md(detail) or "not run")
            else:
                cells.append("yes" if ok else f"**no**: {_md(detail)[:160]}")
        lines.append(f"| {r.release} | {r.distribution} | " + " | ".join(cells)
                     + f" | {r.dns_name_insns or '-'} | {r.accel} | {r.seconds:.0f} s |")
    lines += ["", f"Last run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", ""]
    path.write_text("\n".join(lines))


def _md(text: str) -> str:
    """Log text as table-cell data: no pipes, no markup."""
    return re.sub(r"[|`*_<>\[\]]", " ", " ".join(text.split()))


SETUP_DEBS = ("qemu-system-x86", "kmod", "busybox-static")


def setup() -> None:
    """What booting needs, for a fresh machine (CI): qemu and kmod from apt, virtme-ng from PyPI
    in a venv of its own (VNG), so the project's venv stays as it is."""
    missing = [deb for deb in SETUP_DEBS
               if subprocess.run(["dpkg", "-s", deb], capture_output=True).returncode != 0]
    if missing:
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if not VNG.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VNG.parent.parent)], check=True)
        subprocess.run([str(VNG.parent / "pip"), "install", "-q", "virtme-ng"], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", default=DEFAULT_KERNELS, help="comma-separated series from: " + ", ".join(KERNELS))
    parser.add_argument("--host", action="store_true", help="also run the suite on the running kernel, without a VM")
    parser.add_argument("--checks", default=",".join(CHECKS))
    parser.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    parser.add_argument("--table", type=Path, help="write the support table here (e.g. docs/kernels.md)")
    parser.add_argument("--mirror", help="Debian mirror (default: the one the host's apt uses; "
                                         "Ubuntu's: $CICD_AUDIT_UBUNTU_MIRROR, else archive.ubuntu.com)")
    parser.add_argument("--download-only", action="store_true")
    parser.add_argument("--offline", action="store_true",
                        help="boot the kernels downloaded before, without asking the mirror (tests)")
    parser.add_argument("--setup", action="store_true",
                        help="first install qemu-system-x86, kmod, busybox-static (apt) and virtme-ng (its own venv)")
    parser.add_argument("--prebuild", type=Path, metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--guest", type=Path, metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    checks = args.checks.split(",")
    if args.prebuild:
        prebuild(args.prebuild)
        return 0
    if args.guest:
        return guest_main(args.guest, checks)
    if os.geteuid() != 0:
        raise SystemExit("needs root (loads BPF programs, creates network namespaces)")
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.setup:
        setup()
    series = [s for s in args.kernels.split(",") if s]
    if args.offline:
        kernels = [(KERNELS[s], cached_kernel(KERNELS[s])) for s in series]
    else:
        mirror = args.mirror or debian_mirror()
        kernels = [(KERNELS[s], download_kernel(KERNELS[s], mirror)) for s in series]
    if args.download_only:
        for source, vmlinuz in kernels:
            print(f"{source.series}: {vmlinuz}")
        return 0
    if kernels and not VNG.exists():
        raise SystemExit(f"{VNG} is missing: python3 -m venv {VNG.parent.parent} && {VNG.parent / 'pip'} "
                         "install virtme-ng (and apt-get install qemu-system-x86 kmod busybox-static)")
    logs = CACHE / "logs"
    logs.mkdir(exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="bytecode-", dir=CACHE) as bytecode:
        started = time.monotonic()
        prebuild(Path(bytecode))
        print(f"compiled every variant on the host in {time.monotonic() - started:.0f} s", flush=True)
        os.chmod(bytecode, 0o755)
        if args.host:
            release = os.uname().release
            output, seconds = run_host(Path(bytecode), checks + ["stats"], logs / f"{release}.log")
            found, insns = parse_checks(output)
            results.append(KernelResult("host", release, "this host", "none", seconds, found, insns))
            print(f"{release}: {found} ({seconds:.0f} s)", flush=True)
        accel = None
        for source, vmlinuz in kernels:
            if accel is None:
                accel = args.accel if args.accel != "auto" else ("kvm" if kvm_boots(vmlinuz) else "tcg")
            release = vmlinuz.name.removeprefix("vmlinuz-")
            output, seconds = run_guest(vmlinuz, Path(bytecode), accel, checks + ["stats"], logs / f"{release}.log")
            found, insns = parse_checks(output)
            if "GUEST" not in output:
                found = {c: (False, "the guest did not boot (see the log)") for c in checks}
            elif "guest timed out" in output:
                found.update({c: (None, f"timed out ({GUEST_TIMEOUT_S} s guest limit)") for c in checks
                              if c not in found})
            results.append(KernelResult(source.series, release, source.distribution, accel, seconds, found, insns))
            print(f"{release}: {found} ({seconds:.0f} s; log {logs / (release + '.log')})", flush=True)
    if args.table:
        write_table(results, args.table)
    failed = [r.release for r in results if not all(ok for ok, _ in r.checks.values()) or
              set(r.checks) != set(checks)]
    print("all kernels passed" if not failed else f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
