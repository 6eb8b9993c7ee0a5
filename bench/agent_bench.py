"""The runner agent's cost on a job's critical path, and its memory over many jobs.

In a lab of its own (two namespaces joined by veth; nothing else is touched)
the agent records the runner namespace while N jobs come and go: each job
is `job start`, one HTTP request, `job end`. Measured from the client's side,
as a CI hook sees it:

- `job start` latency;
- `job end` latency, with the analysis (the default) and without
  (--no-analysis), since the analysis is `cicd-audit analyze` in a child;
- the agent's RSS after every --every jobs (it should stay flat).

    sudo python bench/agent_bench.py [--jobs 1000] [--every 100] [--analysis]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cicd_audit.demo import NetnsLab
from cicd_audit.recorder.control import request

VENV_BIN = Path(sys.executable).parent
CICD_AUDIT = str(VENV_BIN / "cicd-audit")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def agent_pid(lab: NetnsLab, proc: subprocess.Popen) -> int:
    """The agent's own pid: the lab's wrappers exec into it, so it is the Popen's."""
    return proc.pid


def timed(argv: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return (time.perf_counter() - t0) * 1000, done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--analysis", action="store_true", help="keep the per-job analysis (slower: ~1 s a job)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agent-bench-"))
    sock = work / "agent.sock"
    with NetnsLab("agentbench") as lab:
        server = lab.start(lab.internet, [sys.executable, "-m", "http.server", "8080", "--bind", lab.internet_ip],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
        argv = [CICD_AUDIT, "agent", "--out", str(work / "sessions"), "--iface", lab.runner_if, *lab.record_args(),
                "--socket", str(sock)] + ([] if args.analysis else ["--no-analysis"])
        agent = lab.start(lab.runner, lab.in_cgroup(argv), stderr=subprocess.PIPE, text=True)
        if "jobs through" not in agent.stderr.readline():
            raise SystemExit("the agent did not start")
        time.sleep(1)
        curl = lab.cmd(lab.runner, ["curl", "-s", "-o", "/dev/null", "--retry", "5", "--retry-connrefused",
                                    f"http://{lab.internet_ip}:8080/"])
        # Odd jobs through the command a hook runs (an interpreter start included), even ones
        # through the socket from here: the agent's own share.
        cli = {"start": [], "end": []}
        socket_only = {"start": [], "end": []}
        print(f"{'jobs':>6} {'agent RSS':>10} | {'hook command: start':>20} {'end':>7} | "
              f"{'agent round trip: start':>24} {'end':>7}   (p50 / p95, ms)")
        for n in range(1, args.jobs + 1):
            for op in ("start", "end"):
                if op == "end":
                    subprocess.run(curl, check=True)
                if n % 2:
                    ms, _ = timed([CICD_AUDIT, "job", op, "--socket", str(sock)])
                    cli[op].append(ms)
                else:
                    t0 = time.perf_counter()
                    reply = request(sock, {"op": op, "labels": {"n": str(n)}} if op == "start" else {"op": op})
                    assert reply["ok"], reply
                    socket_only[op].append((time.perf_counter() - t0) * 1000)
            if n % args.every == 0:
                def q(xs, p):
                    xs = sorted(xs[-args.every // 2:])
                    return xs[min(len(xs) - 1, int(p * len(xs)))]
                cells = " ".join(f"{q(d[op], 0.5):6.1f}/{q(d[op], 0.95):6.1f}" for d in (cli,) for op in ("start", "end"))
                own = " ".join(f"{q(d[op], 0.5):6.1f}/{q(d[op], 0.95):6.1f}" for d in (socket_only,)
                               for op in ("start", "end"))
                print(f"{n:6d} {rss_kib(agent_pid(lab, agent)) / 1024:7.1f} MB | {cells:>28} | {own:>32}", flush=True)
        agent.terminate()
        agent.wait(60)
        server.terminate()
    subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    main()
