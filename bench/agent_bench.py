"""The runner agent's cost on a job's critical path, and its memory over many jobs.

In a lab of its own (two namespaces joined by veth; nothing else is touched)
the agent records the runner namespace while N jobs come and go: each job
is `job start`, one HTTP request, `job end`. Measured from the client's side,
as a CI hook sees it:

- `job start` latency;
- `job end` latency, with the analysis (the default) and without
  (--no-analysis), since the analysis is `cicd-audit analyze` in a child;
- both through `cicd-audit job` (the command on PATH) and through the
  `cicd-audit-job` client `job install-hooks` writes beside the hook scripts
  (the same module without site-packages), in turn with the agent's own
  share (a request from this process);
- the agent's RSS after every --every jobs (it should stay flat).

With --runners 2 a second runner, in a cgroup of its own, keeps a job open
the whole time and fetches every 0.2 s: the measured runner's jobs then go
through the agent's several-runner path (events filed by cgroup, a job's end
draining only its own connections).

    sudo python bench/agent_bench.py [--jobs 1000] [--every 100] [--analysis] [--runners 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cicd_audit.control_protocol import request
from cicd_audit.lab import V4, Lab, agent_ready
from cicd_audit.lab.cgroups import in_cgroup

VENV_BIN = Path(sys.executable).parent
CICD_AUDIT = str(VENV_BIN / "cicd-audit")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def agent_pid(lab: Lab, proc: subprocess.Popen) -> int:
    """The agent's own pid: the lab's wrappers exec into it, so it is the Popen's."""
    return proc.pid


RUNNER = "bench"


def timed(argv: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=True, env={**os.environ, "RUNNER_NAME": RUNNER})
    return (time.perf_counter() - t0) * 1000, done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--analysis", action="store_true", help="keep the per-job analysis (slower: ~1 s a job)")
    parser.add_argument("--runners", type=int, choices=(1, 2), default=1,
                        help="2: another runner's job stays open beside the measured ones")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agent-bench-"))
    sock = work / "agent.sock"
    with Lab() as lab:
        server = lab.popen(lab.server_ns, [sys.executable, "-m", "http.server", "8080", "--bind", V4[1]],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
        argv = [CICD_AUDIT, "agent", "--out", str(work / "sessions"), "--iface", lab.client_if, *lab.cgroup_option(),
                "--socket", str(sock)] + ([] if args.analysis else ["--no-analysis"])
        agent = lab.popen(lab.client_ns, lab.in_cgroup(argv), stderr=subprocess.PIPE, text=True)
        try:
            agent_ready(agent.stderr)
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from None
        time.sleep(1)
        curl = lab.cmd(lab.client_ns, ["curl", "-s", "-o", "/dev/null", "--retry", "5", "--retry-connrefused",
                                       f"http://{V4[1]}:8080/"])
        neighbour = start_neighbour(lab, sock, curl) if args.runners == 2 else None
        # Jobs in turn through the command on PATH, through the hook client (an interpreter start
        # included in both), and through the socket from here: the agent's own share.
        hooks_dir = work / "runner"
        hooks_dir.mkdir()
        subprocess.run([CICD_AUDIT, "job", "install-hooks", "github", str(hooks_dir)], check=True, capture_output=True)
        hook_client = str(hooks_dir / "cicd-audit-hooks" / "cicd-audit-job")
        ways = {"command": {"start": [], "end": []}, "hook client": {"start": [], "end": []},
                "socket": {"start": [], "end": []}}
        print(f"{'jobs':>6} {'agent RSS':>10} | " + " | ".join(f"{w + ': start':>20} {'end':>7}" for w in ways)
              + "   (p50 / p95, ms)")
        for n in range(1, args.jobs + 1):
            way = list(ways)[n % 3]
            for op in ("start", "end"):
                if op == "end":
                    subprocess.run(curl, check=True)
                if way == "socket":
                    t0 = time.perf_counter()
                    reply = request(sock, {"op": op, "labels": {"n": str(n), "runner": RUNNER}} if op == "start"
                                    else {"op": op, "runner": RUNNER})
                    assert reply["ok"], reply
                    ways[way][op].append((time.perf_counter() - t0) * 1000)
                else:
                    argv = [CICD_AUDIT, "job"] if way == "command" else [hook_client]
                    ms, _ = timed([*argv, op, "--socket", str(sock)])
                    ways[way][op].append(ms)
            if n % args.every == 0:
                def q(xs, p):
                    xs = sorted(xs[-args.every // 3:])
                    return xs[min(len(xs) - 1, int(p * len(xs)))]
                cells = " | ".join(" ".join(f"{q(d[op], 0.5):6.1f}/{q(d[op], 0.95):6.1f}" for op in ("start", "end"))
                                   for d in ways.values())
                print(f"{n:6d} {rss_kib(agent_pid(lab, agent)) / 1024:7.1f} MB | {cells}", flush=True)
        if neighbour is not None:
            neighbour.terminate()
            neighbour.wait(10)
        agent.terminate()
        agent.wait(60)
        server.terminate()
    subprocess.run(["rm", "-rf", str(work)])


def start_neighbour(lab: Lab, sock: Path, curl: list[str]) -> subprocess.Popen:
    """Another runner (its own cgroup) whose job stays open, fetching every 0.2 s."""
    cgroup = lab.cgroup / "neighbour"
    cgroup.mkdir()
    env = {**os.environ, "RUNNER_NAME": "neighbour"}
    subprocess.run(in_cgroup(cgroup, [CICD_AUDIT, "job", "start", "--socket", str(sock)]), check=True,
                   capture_output=True, env=env)
    loop = f"while true; do {' '.join(curl)}; sleep 0.2; done"
    return subprocess.Popen(in_cgroup(cgroup, ["sh", "-c", loop]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
