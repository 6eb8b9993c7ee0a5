"""Benchmarks of the live recorder (`cicd-audit record`), in a throw-away veth lab.

    sudo python bench/record_bench.py [--quick] [--rounds N] [--json PATH] [--only WHAT]

1. Kernel cost per packet: a 64-byte UDP flood (iperf3 -u -l 22: 22 B payload +
   8 UDP + 20 IPv4 + 14 Ethernet = 64 B frames) out of the client veth, with our
   TC program attached vs. a no-op TC program (bench/noop_tc.c), alternated.
   Cost = delta run_time_ns / delta run_cnt from the programs' fdinfo
   (kernel.bpf_stats_enabled=1). Our entry programs are ca_packet (ingress) and
   ca_egress (egress); the kernel times tail-called stages with the program that
   called them, so the cost is their summed run_time_ns over their summed run_cnt.
   The same flood under `record --block` (a policy allowing the destination) is
   alternated with them. Goal: at most 100 ns above the no-op.
   --candidate CLI adds rounds of another build's `cicd-audit` (e.g. a worktree
   installed in its own venv) and reports its per-round difference to ours: the
   way to judge a change to the kernel code on the live flood.
2. TCP throughput: iperf3 across the veth pair without and with the recorder
   (recording in the client namespace), alternated. Goal: >= 97 %. Also the CPU
   time the recorder's programs took per second of transfer (bpf_stats), a
   low-noise bound on what recording can cost.
3. No loss: 20,000 DNS queries in 10 s against dnsmasq (each from its own source
   port, unique names) and 5,000 short TCP connections: every one must be in
   conn.log / dns.log, and capture_stats.log must show ringbuf_drops 0.
5. A DNS flood through the recorder (--only dns_rate): the job sends queries to
   dnsmasq at a fixed rate (15,000/s: 30,000 DNS messages/s with the answers)
   while one of its processes does CPU-bound work, once without the recorder
   and once under `record` (and once under `record --nice 0`), alternated.
   The job is slowed by the share of its work it lost, and of its queries
   that went unanswered; the recorder must still log every message (0 drops),
   catching up from its backlog after the job. Goal: the job slowed <= 5 %.
   The recorder's CPU time is its own: /usr/bin/time's total around
   `record -- job` less the job's (which the job reports: it is the
   recorder's child, so the total counts it too).
4. Start-up: from launching `cicd-audit record --out D -- CMD` until CMD runs
   (its first packet is then checked to be in conn.log). Goal: <= 1 s.
   --candidate times the other build's start in the same rounds.
   Peak memory: max RSS of the recorder (/usr/bin/time), in the no-loss run.

Traffic only ever flows inside the lab's two namespaces (cicd_audit.lab: the
client 10.99.0.1 <-veth-> the server 10.99.0.2); they are deleted (with
everything running in them) at the end, also after errors.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cicd_audit.lab import CICD_AUDIT, SUBNET_V4, V4, Lab

HERE = Path(__file__).resolve().parent
CLI = [CICD_AUDIT]
SERVER = V4[1]
PY = sys.executable
IPERF_PORT = 5201
TCP_PORT = 8080
DNS_PORT_BASE = 20000       # the DNS sender uses source ports 20000.. (one per query)
TCP_PORT_BASE = 40000       # the TCP client uses source ports 40000.. (ephemeral range: 50000-60999)


# -- BPF program statistics ---------------------------------------------------

def _bpf_syscall_nr() -> int:
    return {"x86_64": 321, "aarch64": 280}.get(platform.machine(), 321)


def prog_name(prog_id: int) -> str:
    """Name of a loaded BPF program, via BPF_PROG_GET_FD_BY_ID + BPF_OBJ_GET_INFO_BY_FD."""
    libc = ctypes.CDLL(None, use_errno=True)
    attr = (ctypes.c_uint32 * 32)()
    attr[0] = prog_id
    fd = libc.syscall(_bpf_syscall_nr(), 13, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd < 0:
        return "?"
    try:
        info = (ctypes.c_uint8 * 256)()
        attr = (ctypes.c_uint64 * 4)()
        attr[0] = fd | (ctypes.sizeof(info) << 32)       # bpf_fd, info_len
        attr[1] = ctypes.addressof(info)
        if libc.syscall(_bpf_syscall_nr(), 15, ctypes.byref(attr), ctypes.sizeof(attr)) < 0:
            return "?"
        return bytes(info[64:80]).split(b"\0")[0].decode()  # bpf_prog_info.name
    finally:
        os.close(fd)


def prog_stats(pid: int) -> dict[str, tuple[int, int]]:
    """{program name: (run_time_ns, run_cnt)} for the BPF programs process `pid` holds."""
    out: dict[str, tuple[int, int]] = {}
    seen = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-prog":
                continue
            text = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        fields = dict(re.findall(r"^(\w+):\s+(\S+)", text, re.M))
        pid_ = int(fields.get("prog_id", -1))
        if pid_ in seen:
            continue
        seen.add(pid_)
        name = prog_name(pid_)          # a program loaded twice (the fentry hook, once per function) adds up
        run_ns, runs = out.get(name, (0, 0))
        out[name] = (run_ns + int(fields.get("run_time_ns", 0)), runs + int(fields.get("run_cnt", 0)))
    return out


# -- the lab ------------------------------------------------------------------

class BenchLab(Lab):
    """The lab (client 10.99.0.1 -- veth -- server 10.99.0.2), with what only this benchmark needs:
    a client port range kept clear of the load generator's, and background recorders."""

    def __init__(self):
        super().__init__()
        try:
            # Keep the kernel's own ephemeral ports out of the ranges the load generator binds.
            self.sysctl(self.client_ns, "net.ipv4.ip_local_port_range=50000 60999")
        except BaseException:
            self.close()
            raise

    def out_dir(self, name: str) -> Path:
        d = self.workdir / name
        shutil.rmtree(d, ignore_errors=True)
        return d

    def start_recorder_background(self, out: Path, *extra: str, cli: list[str] = CLI) -> int:
        # The socket hooks go on the lab's cgroup, never the host's root (with --block they refuse connects).
        self.run(self.client_ns, self.record_argv(out, None, "--background", *extra, cli=cli), check=True)
        return int((out / "recorder.pid").read_text())

    def stop_recorder(self, out: Path, cli: list[str] = CLI) -> None:
        self.run(self.client_ns, [*cli, "stop", str(out)], check=True)

    def start_noop(self) -> subprocess.Popen:
        helper = f"""
import os, sys
from cicd_audit.recorder.kernel import kernel_headers
h = kernel_headers.choose_headers()
if h.source is not None:
    os.environ["BCC_KERNEL_SOURCE"] = str(h.source)
from bcc import BPF
from pyroute2 import IPRoute
b = BPF(src_file={str(HERE / 'noop_tc.c')!r})
fn = b.load_func(b"noop", BPF.SCHED_CLS)
ipr = IPRoute(); idx = ipr.link_lookup(ifname={self.client_if!r})[0]
ipr.tc("add", "clsact", idx)
for parent in (0xFFFFFFF2, 0xFFFFFFF3):
    ipr.tc("add-filter", "bpf", idx, ":1", fd=fn.fd, name="noop", parent=parent, classid=1, direct_action=True)
print("ready", flush=True)
sys.stdin.read()
ipr.tc("del", "clsact", idx)
"""
        proc = self.popen(self.client_ns, [PY, "-c", helper], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the no-op TC program did not load")
        return proc


# -- 1. kernel cost per packet -------------------------------------------------

def flood(lab: BenchLab, seconds: float) -> None:
    lab.run(lab.client_ns, lab.in_cgroup(["iperf3", "-c", SERVER, "-p", str(IPERF_PORT), "-u", "-b", "0",
                                          "-l", "22", "-t", str(seconds)]), timeout=seconds + 30, check=True)


ENTRY_PROGRAMS = ("ca_packet", "ca_egress")   # tail-called stages run inside these and are timed with them
PER_PACKET_HOOK = "ca_udp_egress"   # cgroup_skb: where the kernel cannot run the per-connect hook
FLOOD_POLICY = f"allowed:\n  cidrs: [{SUBNET_V4}]\n"   # block mode: the flood's destination is allowed


def bench_per_packet(lab: BenchLab, rounds: int, seconds: float, *, block: bool = True,
                     candidate: list[str] | None = None) -> dict:
    """No-op, recorder, recorder --block and a candidate build, alternated round by round on the same flood."""
    old = Path("/proc/sys/kernel/bpf_stats_enabled").read_text().strip()
    Path("/proc/sys/kernel/bpf_stats_enabled").write_text("1")
    policy = lab.workdir / "flood-policy.yml"
    policy.write_text(FLOOD_POLICY)
    kinds = {"noop": (), "ours": ()}
    if block:
        kinds["block"] = ("--block", "--policy", str(policy))
    if candidate:
        kinds["cand"] = ()
    results = {k: [] for k in kinds} | {"pps": [], "tc": [], "hook": [], "hook_raw": []}
    try:
        for r in range(rounds):
            for kind, extra in kinds.items():
                if kind == "noop":
                    proc = lab.start_noop()
                    pid, entries = proc.pid, ("noop",)
                else:
                    cli = candidate if kind == "cand" else CLI
                    out = lab.out_dir(f"flood-{kind}{r}")
                    pid, entries = lab.start_recorder_background(out, *extra, cli=cli), ENTRY_PROGRAMS
                try:
                    before = prog_stats(pid)
                    t0 = time.monotonic()
                    flood(lab, seconds)
                    elapsed = time.monotonic() - t0
                    after = prog_stats(pid)
                finally:
                    if kind == "noop":
                        proc.stdin.close()
                        proc.wait(timeout=10)
                    else:
                        lab.stop_recorder(out, cli=cli)
                spent = {n: (t - before.get(n, (0, 0))[0], c - before.get(n, (0, 0))[1]) for n, (t, c) in after.items()}
                packets = sum(spent[n][1] for n in entries if n in spent)
                # Every program the recorder holds, per packet TC saw: the cgroup hooks, the
                # fentry hook and the sweep's test runs count too.
                ns = sum(t for t, _ in spent.values()) / max(packets, 1)
                results[kind].append(ns)
                if kind == "ours":
                    results["pps"].append(packets / elapsed)
                    results["tc"].append(sum(spent[n][0] for n in entries if n in spent) / max(packets, 1))
                    hook_ns, hook_runs = spent.get(PER_PACKET_HOOK, (0, 0))
                    results["hook"].append(hook_ns / max(packets, 1))
                    if hook_runs:
                        results["hook_raw"].append(hook_ns / hook_runs)
                print(f"  per-packet round {r + 1} {kind:5}: {ns:7.1f} ns/packet over {packets} packets "
                      f"({', '.join(sorted(n for n, (_, c) in spent.items() if c))})", flush=True)
    finally:
        Path("/proc/sys/kernel/bpf_stats_enabled").write_text(old)
    noop, ours = statistics.median(results["noop"]), statistics.median(results["ours"])
    res = {"noop_ns": noop, "ours_ns": ours, "delta_ns": ours - noop, "rounds": rounds,
           "noop_all": results["noop"], "ours_all": results["ours"],
           "runs_per_s": statistics.median(results["pps"]), "tc_ns": statistics.median(results["tc"]),
           "udp_hook_ns": statistics.median(results["hook"]),
           "udp_hook_raw_ns": statistics.median(results["hook_raw"]) if results["hook_raw"] else None}
    if block:
        res |= {"block_ns": statistics.median(results["block"]),
                "block_delta_ns": statistics.median(results["block"]) - noop, "block_all": results["block"]}
    if candidate:
        # Each round's candidate minus the same round's ours: the drift between rounds cancels.
        res |= {"cand_ns": statistics.median(results["cand"]), "cand_all": results["cand"],
                "cand_minus_ours_ns": statistics.median(c - o for c, o in zip(results["cand"], results["ours"]))}
    return res


# -- 2. TCP throughput ---------------------------------------------------------

def bench_throughput(lab: BenchLab, rounds: int, seconds: int) -> dict:
    """iperf3 TCP without and with a recorder (started in the background for the "on"
    rounds, so its programs' run time can be read around the transfer), alternated.
    Besides the ratio, which this VM's noise swamps, the CPU time the recorder's
    programs took per second of transfer bounds what recording can cost."""
    iperf = ["iperf3", "-c", SERVER, "-p", str(IPERF_PORT), "-t", str(seconds), "-O", "1",
             "-A", "0,1", "-J"]
    off, on, cpu_share = [], [], []
    old = Path("/proc/sys/kernel/bpf_stats_enabled").read_text().strip()
    Path("/proc/sys/kernel/bpf_stats_enabled").write_text("1")
    try:
        for r in range(rounds):
            for kind in ("off", "on"):
                if kind == "on":
                    out = lab.out_dir(f"tput{r}")
                    pid = lab.start_recorder_background(out)
                    before = prog_stats(pid)
                t0 = time.monotonic()
                res = lab.run(lab.client_ns, lab.in_cgroup(iperf), timeout=seconds + 60, check=True)
                elapsed = time.monotonic() - t0
                if kind == "on":
                    after = prog_stats(pid)
                    lab.stop_recorder(out)
                    run_ns = sum(t - before.get(n, (0, 0))[0] for n, (t, _) in after.items())
                    cpu_share.append(run_ns / (elapsed * 1e9))
                bps = json.loads(res.stdout)["end"]["sum_received"]["bits_per_second"]
                (off if kind == "off" else on).append(bps)
                print(f"  throughput round {r + 1} {kind:3}: {bps / 1e9:6.2f} Gbit/s"
                      + (f", recorder's programs {cpu_share[-1] * 100:.2f} % of a CPU" if kind == "on" else ""),
                      flush=True)
    finally:
        Path("/proc/sys/kernel/bpf_stats_enabled").write_text(old)
    ratios = [b / a for a, b in zip(off, on)]
    return {"off_gbps": statistics.median(off) / 1e9, "on_gbps": statistics.median(on) / 1e9,
            "ratio": statistics.median(ratios), "ratio_of_sums": sum(on) / sum(off), "ratios": ratios,
            "cpu_share": statistics.median(cpu_share), "rounds": rounds, "seconds": seconds}


# -- 3. no loss, and 4b. peak memory ---------------------------------------------

LOAD = r"""
import selectors, socket, sys, time
server, n_dns, dns_s, n_tcp, dns_base, tcp_base, tcp_port = sys.argv[1], *map(int, sys.argv[2:8])
def query(i):
    name = b"".join(len(l).to_bytes(1, "big") + l for l in f"q{i}.bench.test".encode().split(b".")) + b"\0"
    return (i & 0xFFFF).to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + name + b"\x00\x01\x00\x01"
sel = selectors.DefaultSelector(); answered = 0; pending = {}
start = time.monotonic()
def drain(timeout):
    global answered
    for key, _ in sel.select(timeout):
        s = key.fileobj
        try:
            s.recv(2048); answered += 1
        except OSError:
            pass
        sel.unregister(s); pending.pop(s, None); s.close()
    now = time.monotonic()
    for s, t in list(pending.items()):
        if now - t > 2:
            sel.unregister(s); pending.pop(s); s.close()
for i in range(n_dns):
    due = start + i * dns_s / n_dns
    while time.monotonic() < due:
        drain(max(0, min(0.01, due - time.monotonic())))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("", dns_base + i)); s.setblocking(False)
    s.sendto(query(i), (server, 53))
    sel.register(s, selectors.EVENT_READ); pending[s] = time.monotonic()
while pending:
    drain(0.1)
dns_time = time.monotonic() - start
t1 = time.monotonic(); ok = 0
for i in range(n_tcp):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", tcp_base + i))
    try:
        s.connect((server, tcp_port)); s.recv(16); ok += 1
    except OSError as e:
        print("tcp error", e, file=sys.stderr)
    s.close()
print(f"LOAD dns_sent={n_dns} dns_answered={answered} dns_seconds={dns_time:.2f} "
      f"tcp_ok={ok} tcp_seconds={time.monotonic() - t1:.2f}", flush=True)
"""

TCP_SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(4096)
while True:
    c, _ = s.accept(); c.close()
"""


def read_zeek(path: Path) -> list[dict]:
    fields, rows = None, []
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif not line.startswith("#") and fields:
            rows.append(dict(zip(fields, line.split("\t"))))
    return rows


def bench_no_loss(lab: BenchLab, n_dns: int, dns_seconds: int, n_tcp: int) -> dict:
    out = lab.out_dir("noloss")
    rss_file = lab.workdir / "rss.txt"
    load = [PY, "-c", LOAD, SERVER, str(n_dns), str(dns_seconds), str(n_tcp),
            str(DNS_PORT_BASE), str(TCP_PORT_BASE), str(TCP_PORT)]
    res = lab.record(out, load, cli=["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *CLI],
                     timeout=dns_seconds + 300, check=True)
    load = dict(re.findall(r"(\w+)=(\S+)", next(line for line in res.stdout.splitlines() if line.startswith("LOAD"))))
    conn = read_zeek(out / "conn.log")
    dns = read_zeek(out / "dns.log")
    stats = read_zeek(out / "capture_stats.log")[-1]
    dns_conn_ports = {int(r["id.orig_p"]) for r in conn
                      if r["id.resp_p"] == "53" and r["proto"] == "udp"
                      and DNS_PORT_BASE <= int(r["id.orig_p"]) < DNS_PORT_BASE + n_dns}
    tcp_rows = [r for r in conn if r["proto"] == "tcp" and r["id.resp_p"] == str(TCP_PORT)
                and TCP_PORT_BASE <= int(r["id.orig_p"]) < TCP_PORT_BASE + n_tcp]
    names = {r["query"] for r in dns if r["query"].endswith(".bench.test")}
    return {"n_dns": n_dns, "dns_seconds": dns_seconds, "n_tcp": n_tcp, "load": load,
            "dns_conn_rows": len(dns_conn_ports), "dns_log_names": len(names),
            "tcp_conn_rows": len({int(r["id.orig_p"]) for r in tcp_rows}),
            "tcp_states": dict(sorted({s: sum(1 for r in tcp_rows if r["conn_state"] == s)
                                       for s in {r["conn_state"] for r in tcp_rows}}.items())),
            "ringbuf_drops": int(stats["ringbuf_drops"]), "conn_table_full": int(stats["conn_table_full"]),
            "packets": int(stats["packets"]),
            "peak_rss_mb": int(rss_file.read_text().split()[-1]) / 1024}


# -- 5. a DNS flood -----------------------------------------------------------------

DNS_FLOOD_JOB = r"""
import os, resource, select, socket, sys, time
server, rate, seconds, nsock = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
worker = os.fork()
if worker == 0:                 # the job's CPU-bound half: as many loops as it gets CPU for
    end, loops = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        for _ in range(1000):
            loops += 1
    print(f"JOB work_per_s={loops / seconds:.0f}", flush=True)
    os._exit(0)
def query(i):
    name = b"".join(len(x).to_bytes(1, "big") + x for x in f"f{i}.bench.test".encode().split(b".")) + b"\0"
    return (i // nsock & 0xFFFF).to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + name + b"\x00\x01\x00\x01"
ep, socks = select.epoll(), []
for _ in range(nsock):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setblocking(False); s.connect((server, 53))
    socks.append(s); ep.register(s.fileno(), select.EPOLLIN)
by_fd = {s.fileno(): s for s in socks}
n, sent, answered = int(rate * seconds), 0, 0
def drain(timeout):
    global answered
    for fd, _ in ep.poll(timeout):
        while True:
            try:
                by_fd[fd].recv(2048); answered += 1
            except BlockingIOError:
                break
start = time.monotonic()
while sent < n:
    due = min(n, int((time.monotonic() - start) * rate) + 1)
    while sent < due:
        try:
            socks[sent % nsock].send(query(sent))
        except BlockingIOError:
            pass
        sent += 1
    drain(0.0005)
sending = time.monotonic() - start
late = time.monotonic() + 1
while answered < n and time.monotonic() < late:
    drain(0.05)
os.waitpid(worker, 0)
# The job's own CPU, its worker's included: /usr/bin/time around `record -- job` counts it too.
cpu = sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))
print(f"JOB sent={n} answered={answered} send_seconds={sending:.3f} end={time.time():.3f} cpu_s={cpu:.3f}",
      flush=True)
"""


def _job_figures(stdout: str) -> dict:
    return {k: float(v) for k, v in re.findall(r"(\w+)=(\S+)", " ".join(
        line for line in stdout.splitlines() if line.startswith("JOB")))}


def bench_dns_rate(lab: BenchLab, rounds: int, rate: float, seconds: float, sockets: int = 64,
                   nice_values: tuple[int, ...] = (10, 0), candidate: list[str] | None = None) -> dict:
    """The job alone and under the recorder (at each --nice value; and a candidate build's recorder,
    as it runs by default), alternated round by round."""
    job = [PY, "-c", DNS_FLOOD_JOB, SERVER, str(rate), str(seconds), str(sockets)]
    kinds = ({"off": None} | {f"nice{n}": ("--nice", str(n)) for n in nice_values}
             | ({"cand": ()} if candidate else {}))
    runs = {k: [] for k in kinds}
    for r in range(rounds):
        for kind, extra in kinds.items():
            if extra is None:
                res = lab.run(lab.client_ns, lab.in_cgroup(job), timeout=seconds + 60, check=True)
                runs[kind].append(_job_figures(res.stdout))
            else:
                out = lab.out_dir(f"dnsrate-{kind}{r}")
                usage = lab.workdir / "usage.txt"
                res = lab.record(out, job, *extra, timeout=seconds + 900,
                                 cli=["/usr/bin/time", "-f", "%U %S %M", "-o", str(usage),
                                      *(candidate if kind == "cand" else CLI)])
                done = time.time()
                fig = _job_figures(res.stdout)
                user, system, rss_kb = usage.read_text().split()[-3:]
                stats = read_zeek(out / "capture_stats.log")[-1]
                fig |= {"status": res.returncode, "drops": int(stats["ringbuf_drops"]),
                        "dns_rows": len({row["query"] for row in read_zeek(out / "dns.log")
                                         if row["query"].endswith(".bench.test")}),
                        # The recorder's own: the job it ran is its child, so the total counts the job too.
                        "recorder_cpu_s": float(user) + float(system) - fig["cpu_s"],
                        "peak_rss_mb": int(rss_kb) / 1024,
                        "catch_up_s": done - fig["end"]}
                runs[kind].append(fig)
            fig = runs[kind][-1]
            print(f"  dns-rate round {r + 1} {kind:5}: work {fig['work_per_s'] / 1e6:.2f} M loops/s, "
                  f"answered {fig['answered']:.0f}/{fig['sent']:.0f}"
                  + (f", dns.log names {fig['dns_rows']}, drops {fig['drops']}, recorder {fig['recorder_cpu_s']:.1f} CPU s, "
                     f"done {fig['catch_up_s']:.1f} s after the job, {fig['peak_rss_mb']:.0f} MB"
                     if kind != "off" else ""), flush=True)
    res = {"rate": rate, "messages_per_s": 2 * rate, "seconds": seconds, "rounds": rounds, "runs": runs}
    for kind in [k for k in kinds if k != "off"]:
        res[kind] = {
            "work_ratio": statistics.median(o["work_per_s"] / b["work_per_s"] for o, b in zip(runs[kind], runs["off"])),
            "answered_ratio": statistics.median(o["answered"] / b["answered"] for o, b in zip(runs[kind], runs["off"])),
            "drops": max(o["drops"] for o in runs[kind]),
            "all_logged": all(o["dns_rows"] == o["sent"] for o in runs[kind]),
            "recorder_cpu_s": statistics.median(o["recorder_cpu_s"] for o in runs[kind]),
            "catch_up_s": statistics.median(o["catch_up_s"] for o in runs[kind]),
            "peak_rss_mb": max(o["peak_rss_mb"] for o in runs[kind])}
    return res


# -- 4. start-up -------------------------------------------------------------------

FIRST_PACKET = r"""
import socket, sys, time
t = time.time()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("", 39999)); s.sendto(b"hello", (sys.argv[1], 9))
print(f"CMD_START {t:.6f}", flush=True)
"""


def bench_startup(lab: BenchLab, rounds: int, candidate: list[str] | None = None) -> dict:
    """Seconds from `record -- CMD` until CMD runs (capture is active by then), and the
    first packet must be in conn.log; with a candidate build, each round times both."""
    builds = {"ours": CLI, **({"cand": candidate} if candidate else {})}
    times: dict[str, list[float]] = {kind: [] for kind in builds}
    idle_rss = []
    for r in range(rounds):
        for kind, cli in builds.items():
            out = lab.out_dir(f"startup{r}-{kind}")
            rss_file = lab.workdir / "rss-idle.txt"
            argv = lab.cmd(lab.client_ns, lab.record_argv(out, [PY, "-c", FIRST_PACKET, SERVER],
                                                          cli=["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *cli]))
            t0 = time.time()
            res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
            start = float(re.search(r"CMD_START (\S+)", res.stdout).group(1))
            recorded = any(r["id.orig_p"] == "39999" and r["id.resp_p"] == "9" for r in read_zeek(out / "conn.log"))
            if not recorded:
                raise RuntimeError(f"{kind}: the command's first packet is not in conn.log")
            times[kind].append(start - t0)
            if kind == "ours":
                idle_rss.append(int(rss_file.read_text().split()[-1]) / 1024)
            print(f"  start-up round {r + 1} {kind}: {start - t0:.3f} s (first packet recorded)", flush=True)
    result = {"median_s": statistics.median(times["ours"]), "all_s": times["ours"], "idle_rss_mb": max(idle_rss)}
    if candidate:
        result["cand_median_s"] = statistics.median(times["cand"])
        result["cand_all_s"] = times["cand"]
        result["ours_over_cand"] = statistics.median(o / c for o, c in zip(times["ours"], times["cand"]))
    return result


# -- report ----------------------------------------------------------------------

def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    return {"kernel": platform.release(), "cpus": os.cpu_count(), "cpu": cpu,
            "mem_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
            "python": platform.python_version()}


def table(res: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    p = res.get("per_packet")
    if p:
        rows.append(("Kernel cost per 64-byte packet, every program of the recorder (median)",
                     f"{p['ours_ns']:.0f} ns vs no-op {p['noop_ns']:.0f} ns: +{p['delta_ns']:.0f} ns",
                     "<= +100 ns", "met" if p["delta_ns"] <= 100 else "MISSED"))
        rows.append(("  of which TC (median)", f"{p['tc_ns']:.0f} ns: +{p['tc_ns'] - p['noop_ns']:.0f} ns", "-", "-"))
        if p.get("udp_hook_raw_ns"):
            rows.append(("  of which the per-packet connected-UDP hook (ca_udp_egress; median)",
                         f"{p['udp_hook_ns']:.0f} ns ({p['udp_hook_raw_ns']:.0f} ns a run, bpf_stats' own timing "
                         "included); the kernel runs no per-connect hook here", "-", "-"))
        if "block_ns" in p:
            rows.append(("Kernel cost per 64-byte packet, record --block (median)",
                         f"{p['block_ns']:.0f} ns vs no-op {p['noop_ns']:.0f} ns: +{p['block_delta_ns']:.0f} ns",
                         "as record", "-"))
        if "cand_ns" in p:
            rows.append(("Kernel cost per 64-byte packet, candidate build (median)",
                         f"{p['cand_ns']:.0f} ns; candidate - ours per round, median: "
                         f"{p['cand_minus_ours_ns']:+.1f} ns", "-", "-"))
    t = res.get("throughput")
    if t:
        rows.append(("iperf3 TCP throughput, recording / not (median ratio)",
                     f"{t['ratio'] * 100:.1f} % ({t['on_gbps']:.2f} vs {t['off_gbps']:.2f} Gbit/s; "
                     f"ratio of sums {t['ratio_of_sums'] * 100:.1f} %)",
                     ">= 97 %", "met" if t["ratio"] >= 0.97 else "MISSED"))
        rows.append(("CPU time of the recorder's programs during the transfer (median)",
                     f"{t['cpu_share'] * 100:.2f} % of one CPU", "-", "-"))
    n = res.get("no_loss")
    if n:
        ok = (n["dns_conn_rows"] == n["n_dns"] and n["dns_log_names"] == n["n_dns"]
              and n["tcp_conn_rows"] == n["n_tcp"] and n["ringbuf_drops"] == 0)
        rows.append((f"No loss: {n['n_dns']} DNS queries in {n['dns_seconds']} s + {n['n_tcp']} TCP connections",
                     f"conn.log {n['dns_conn_rows']}/{n['n_dns']} DNS, {n['tcp_conn_rows']}/{n['n_tcp']} TCP; "
                     f"dns.log {n['dns_log_names']}/{n['n_dns']}; ringbuf_drops {n['ringbuf_drops']}",
                     "all, 0 drops", "met" if ok else "MISSED"))
    d = res.get("dns_rate")
    if d:
        for kind in [k for k in d if k.startswith("nice") or k == "cand"]:
            label = "candidate build" if kind == "cand" else f"record --nice {kind[4:]}"
            k = d[kind]
            slowed = 1 - min(k["work_ratio"], k["answered_ratio"])
            rows.append((f"DNS flood {d['messages_per_s']:,.0f} messages/s for {d['seconds']:.0f} s, {label}: job slowed",
                         f"{slowed * 100:.1f} % (work {k['work_ratio'] * 100:.1f} %, answered "
                         f"{k['answered_ratio'] * 100:.1f} % of alone); drops {k['drops']}, "
                         f"{'every' if k['all_logged'] else 'NOT every'} query logged, recorder "
                         f"{k['recorder_cpu_s']:.1f} CPU s, done {k['catch_up_s']:.1f} s after the job, "
                         f"{k['peak_rss_mb']:.0f} MB", "<= 5 %", "met" if slowed <= 0.05 else "MISSED"))
    s = res.get("startup")
    if s:
        rows.append(("Start-up until capture is active (median)", f"{s['median_s']:.2f} s", "<= 1 s",
                     "met" if s["median_s"] <= 1 else "MISSED"))
        if "cand_median_s" in s:
            rows.append(("Start-up, candidate build (median)", f"{s['cand_median_s']:.2f} s; ours / candidate "
                         f"per round, median: {s['ours_over_cand']:.2f}", "-", "-"))
    if n:
        rows.append(("Recorder peak RSS (no-loss run)", f"{n['peak_rss_mb']:.0f} MB", "-", "-"))
    if s:
        rows.append(("Recorder peak RSS (idle, start-up run)", f"{s['idle_rss_mb']:.0f} MB", "-", "-"))
    return rows


def print_table(rows) -> None:
    widths = [max(len(r[i]) for r in rows + [("Measure", "Result", "Goal", "")]) for i in range(4)]
    for r in [("Measure", "Result", "Goal", ""), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds, shorter runs, smaller load")
    ap.add_argument("--json", metavar="PATH", help="also save the raw results as JSON")
    ap.add_argument("--only", choices=["per_packet", "throughput", "no_loss", "startup", "dns_rate"], action="append",
                    help="run only these (repeatable); dns_rate runs only when named")
    ap.add_argument("--dns-rate", type=float, default=15000, metavar="QPS",
                    help="dns_rate: queries per second (each answered: twice the DNS messages)")
    ap.add_argument("--dns-nice", default="10,0", metavar="LIST",
                    help="dns_rate: the recorder's --nice values to compare with the job alone (default 10,0)")
    ap.add_argument("--rounds", type=int,
                    help="alternated rounds of per_packet, throughput, startup and dns_rate (default 5, quick 2)")
    ap.add_argument("--candidate", metavar="CLI",
                    help="per_packet, startup and dns_rate: also time this cicd-audit executable (another build)")
    ap.add_argument("--no-block", action="store_true", help="per_packet: leave out the record --block rounds")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("record_bench: needs root (network namespaces, BPF)", file=sys.stderr)
        return 2
    q = args.quick
    rounds = args.rounds or (2 if q else 5)
    only = set(args.only or ["per_packet", "throughput", "no_loss", "startup"])
    res = {"machine": machine(), "quick": q}
    print(f"machine: {res['machine']}", flush=True)
    with BenchLab() as lab:
        lab.popen(lab.server_ns, ["iperf3", "-s", "-B", SERVER, "-p", str(IPERF_PORT)],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # no cache: every query of the no-loss run is a new name anyway
        lab.start_dnsmasq({"bench.test": (SERVER,)}, ["cache-size=0", "dns-forward-max=5000"])
        lab.popen(lab.server_ns, [PY, "-c", TCP_SERVER, SERVER, str(TCP_PORT)])
        lab.wait_listening("-ltn", f"{SERVER}:{IPERF_PORT}")
        lab.wait_listening("-ltn", f"{SERVER}:{TCP_PORT}")
        if "startup" in only:
            print("4. start-up", flush=True)
            res["startup"] = bench_startup(lab, args.rounds or (2 if q else 5),
                                           candidate=[args.candidate] if args.candidate else None)
        if "per_packet" in only:
            print("1. kernel cost per packet (64-byte UDP flood)", flush=True)
            res["per_packet"] = bench_per_packet(lab, rounds, 2 if q else 5, block=not args.no_block,
                                                 candidate=[args.candidate] if args.candidate else None)
        if "throughput" in only:
            print("2. TCP throughput", flush=True)
            res["throughput"] = bench_throughput(lab, rounds, 2 if q else 5)
        if "dns_rate" in only:
            print("5. a DNS flood", flush=True)
            res["dns_rate"] = bench_dns_rate(lab, rounds, args.dns_rate, 3 if q else 8,
                                             nice_values=tuple(int(n) for n in args.dns_nice.split(",")),
                                             candidate=[args.candidate] if args.candidate else None)
        if "no_loss" in only:
            print("3. no loss", flush=True)
            res["no_loss"] = (bench_no_loss(lab, 2000, 2, 500) if q else bench_no_loss(lab, 20000, 10, 5000))
            print(f"  {res['no_loss']}", flush=True)
    print()
    print_table(table(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
        print(f"\nraw results -> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
