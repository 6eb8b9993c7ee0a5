#!/usr/bin/env python3
"""Cost of the exec hooks (bpf/exec_paths.h): per exec, per fork, and on a spawn-heavy job.

The live program is loaded; rounds alternate between the hooks attached and
not. Each round spawns /bin/true N times (posix_spawn: a fork and an exec, as
a shell or a build tool does) and waits for each. Reported:
- each hook's own cost, delta run_time_ns / delta run_cnt from the kernel's
  BPF statistics (kernel.bpf_stats_enabled, restored afterwards);
- the spawn-and-wait time per process with and without the hooks, and their ratio.

    sudo python bench/exec_hook_cost.py [--rounds 6] [--spawns 2000]

Nothing touches a network interface; the hooks only read.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

from cicd_audit.recorder.attach.exec_hooks import ExecHooks
from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings

STATS = Path("/proc/sys/kernel/bpf_stats_enabled")


def run_stats(prog_fd: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of a loaded program, from its fdinfo."""
    fields = dict(line.split(":\t", 1) for line in Path(f"/proc/self/fdinfo/{prog_fd}").read_text().splitlines()
                  if ":\t" in line)
    return int(fields.get("run_time_ns", 0)), int(fields.get("run_cnt", 0))


def spawn_round(binary: str, spawns: int) -> float:
    """Seconds per spawn-and-wait of binary."""
    started = time.perf_counter()
    for _ in range(spawns):
        pid = os.posix_spawn(binary, [binary], {})
        os.waitpid(pid, 0)
    return (time.perf_counter() - started) / spawns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds per condition, alternated")
    parser.add_argument("--spawns", type=int, default=2000)
    args = parser.parse_args()
    binary = shutil.which("true")
    program = CaptureProgram(ProgramSettings(pcap_mode=False, attribution=True), lambda data, size: None)
    previous = STATS.read_text().strip()
    STATS.write_text("1")
    times = {"without hooks": [], "with hooks": []}
    costs = {name: [0, 0] for name in program.exec_programs}
    try:
        spawn_round(binary, args.spawns // 10)                    # warm-up
        for r in range(args.rounds * 2):
            hooked = r % 2 == 1
            if not hooked:
                times["without hooks"].append(spawn_round(binary, args.spawns))
                continue
            with ExecHooks(program):
                before = {n: run_stats(fd) for n, fd in program.exec_programs.items()}
                times["with hooks"].append(spawn_round(binary, args.spawns))
                for name, fd in program.exec_programs.items():
                    ns, count = run_stats(fd)
                    costs[name][0] += ns - before[name][0]
                    costs[name][1] += count - before[name][1]
    finally:
        STATS.write_text(previous)
        program.close()
    for name, (ns, count) in costs.items():
        print(f"{name}: {ns / max(count, 1):.0f} ns per run ({count:,} runs)")
    medians = {k: statistics.median(v) for k, v in times.items()}
    for condition, seconds in medians.items():
        print(f"spawn and wait, {condition}: {seconds * 1e6:.1f} us (median of {len(times[condition])} rounds "
              f"of {args.spawns})")
    print(f"ratio with/without: {medians['with hooks'] / medians['without hooks']:.3f}")


if __name__ == "__main__":
    main()
