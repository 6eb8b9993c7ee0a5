"""The runner agent: one long-lived recorder, one session per CI job.

`cicd-audit agent --out DIR` loads and attaches once (TC on the interfaces;
the socket hooks on --cgroup, default the whole host) and records without
end. The CI platform's own job hooks mark the boundaries through a local
Unix socket (control.py):

    cicd-audit job start [--label KEY=VALUE]...   a new session directory, printed
    cicd-audit job end                            that session closed and analyzed, printed

Each session is DIR/<UTC start>-job<N>/ with the Zeek logs, job.json (the
job's identity, start and end), and at its end analysis.json and
summary.md from `cicd-audit analyze`, run in a child process so the agent
itself never loads pandas and stays small across thousands of jobs.

Boundaries: at a job's end every open connection is ended into that job's
session (as at the end of a recording), and at a job's start every
connection opened before it is ended outside any session; one that lives on
(a runner's long poll) is seen afresh, as a connection first seen
mid-stream. Between jobs nothing is written; the events are counted
(`status`). A `job start` while the same runner's job is open ends that one
first, marked "superseded" (a completed-hook that never ran); stopping the
agent ends an open job marked "interrupted".

Several runners on one host: open jobs are keyed by runner, and while more
than one is open each event goes to the job whose cgroup holds the process
behind it (job_router.py); a job's start and end then touch only its own
connections. See docs/agent.md, "Several runners on one host".
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cicd_audit import compiled, notices
from cicd_audit.errors import EnvironmentProblem, UsageError
from cicd_audit.policy import PolicyError
from cicd_audit.recorder.agent.agent_policy import JobPolicy, PolicyDirectory
from cicd_audit.recorder.agent.control import ControlServer
from cicd_audit.recorder.agent.job_router import JobRouter, owner_cgroup
from cicd_audit.recorder.agent.job_slots import JobSlots
from cicd_audit.recorder.attach import udp_connect_hooks
from cicd_audit.recorder.attach.attach import TcAttachment
from cicd_audit.recorder.attach.cgroup_attach import CgroupAttachment, cgroup2_mount
from cicd_audit.recorder.attach.exec_hooks import attach_exec_hooks
from cicd_audit.recorder.attach.interfaces import choose_interfaces
from cicd_audit.recorder.attach.job_scope import JobScope, JoinedCgroup, job_of_slot, process_cgroup
from cicd_audit.recorder.drivers.cpu_priority import DEFAULT_NICE_INCREMENT, yield_to_job
from cicd_audit.recorder.drivers.gc_pacing import pace_for_events
from cicd_audit.recorder.drivers.stop_flag import StopFlag
from cicd_audit.recorder.kernel import abi
from cicd_audit.recorder.kernel.backlog import HANDLE_BUDGET_S
from cicd_audit.recorder.kernel.block_tables import PolicyTables, clear_job
from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings, require_root
from cicd_audit.recorder.kernel.packet_runner import DatagramRunner
from cicd_audit.recorder.kernel.sweeper import Sweeper
from cicd_audit.recorder.logs import events
from cicd_audit.recorder.logs.ci_steps import parent_pid
from cicd_audit.recorder.logs.dns.wire import ParseOptions
from cicd_audit.recorder.logs.output_dir import OutputDir, open_directory
from cicd_audit.recorder.logs.processes import ProcessTable
from cicd_audit.recorder.logs.session import Rotation, SessionLog

POLL_MS = 100
SWEEP_INTERVAL_S = 1.0
JOB_FILE = "job.json"
LABEL_MAX = 256


@dataclass
class JobSession:
    """One job's recording: its directory, logs and identity."""

    number: int
    output: OutputDir
    log: SessionLog
    identity: dict
    started_wall: float
    started: float                      # monotonic
    kernel_stats_at_start: dict
    runner: str = ""                    # the runner it runs on: open jobs are keyed by it
    meta: dict = field(default_factory=dict)
    cgroup: JoinedCgroup | None = None  # blocking: the job's cgroup, its worker moved in
    slot: int | None = None             # blocking: its slot in the kernel's job_scope
    scope: Path | None = None           # the cgroup its events are filed by when other jobs are open
    events_not_filed: int = 0           # events of no open job's scope while others were open


@dataclass
class AgentBlocking:
    """Per-job blocking: the admin's policy directory, the resolvers DNS may go to, the
    runner's endpoints (its worker, which starts the steps, is in the job), and the local
    stub resolvers the job's lookups are taken from."""

    policies: PolicyDirectory
    resolvers: Sequence = ()
    runner_endpoints: Path | None = None
    stub_redirects: Sequence = ()


class Agent:
    def __init__(self, out_dir: Path, interfaces: Sequence[str] | None, cgroup: Path | None, fmt: str,
                 socket_path: Path, socket_group: str | None = None, process_args: bool = False,
                 analyze: bool = True, blocking: AgentBlocking | None = None, retain: int | None = None,
                 rotation: Rotation | None = None, nice: int = DEFAULT_NICE_INCREMENT,
                 dns_options: ParseOptions | None = None, tunnel_max_depth: int | None = None) -> None:
        self.out_dir = out_dir
        self.dns_options = dns_options      # Zeek's DNS settings for every session (None: its defaults)
        self.tunnel_max_depth = tunnel_max_depth      # Zeek's Tunnel::max_depth (None: its default)
        self.nice = nice                    # how far the agent's CPU priority goes below the jobs' (cpu_priority.py)
        self.rotation = rotation            # within each job's session (None: one file per log)
        self.retain = retain                # keep the newest N sessions (None: all)
        self.blocking = blocking
        self.v2_root: Path | None = None
        self.interfaces = interfaces
        self.cgroup = cgroup
        self.fmt = fmt
        self.socket_path = socket_path
        self.socket_group = socket_group
        self.analyze = analyze
        self.processes = ProcessTable(keep_cmdline=process_args)
        self.jobs: dict[str, JobSession] = {}   # open jobs by runner, in start order
        self.router = JobRouter()
        self.slots = JobSlots()
        self.jobs_started = 0
        self.outside_events = 0          # events between jobs, not written anywhere
        self._epoch_offset_ns = time.time_ns() - time.monotonic_ns()
        self.program: CaptureProgram | None = None
        self._sweeper: Sweeper | None = None

    # -- the loop ---------------------------------------------------------------------------

    def run(self, on_ready=None) -> int:
        require_root()
        interfaces = choose_interfaces(self.interfaces or (), False)
        root_fd = open_directory(self.out_dir, create=True)    # refuses links the job could plant
        os.close(root_fd)
        for line in mark_orphaned_sessions(self.out_dir):
            notices.say(f"cicd-audit agent: {line}")
        flag = StopFlag()
        flag.install()
        try:
            with contextlib.ExitStack() as stack:
                # The socket first: a second agent is refused before it loads or attaches anything.
                server = stack.enter_context(ControlServer(self.socket_path, self.socket_group, self._request))
                self.program = CaptureProgram(ProgramSettings(pcap_mode=False, attribution=True,
                                                              block=self.blocking is not None), self._on_event)
                self._sweeper = Sweeper(self.program, self.program.sweep_fn.fd)
                if self.tunnel_max_depth is not None:
                    self.program.set_tunnel_max_depth(self.tunnel_max_depth)
                self.v2_root = cgroup2_mount()
                if self.blocking is not None:           # no job is judged until one starts
                    for redirect in self.blocking.stub_redirects:
                        redirect.fill(self.program.maps["dns_stubs"])
                self.program.wake_on(server.sock.fileno())      # a hook's request is answered at once
                cgroup = self.cgroup or self.v2_root
                if cgroup is not None:
                    hooks = udp_connect_hooks.cgroup_programs(stack, self.program, "cicd-audit agent")
                    stack.enter_context(CgroupAttachment(cgroup, hooks))
                    attach_exec_hooks(stack, self.program, self.processes, "cicd-audit agent")
                else:
                    notices.say("cicd-audit agent: connections will not name their processes: no cgroup v2")
                stack.enter_context(TcAttachment(interfaces, self.program.packet_fn.fd,
                                                 egress_fd=self.program.egress_fn.fd))
                notices.say(f"cicd-audit agent: recording {','.join(interfaces)}; jobs through {self.socket_path}")
                compiled.announce("cicd-audit agent")
                pace_for_events()
                if on_ready is not None:
                    on_ready()
                yield_to_job(self.nice)
                next_sweep = time.monotonic() + SWEEP_INTERVAL_S
                while not flag.stop:
                    self.program.poll(POLL_MS, budget_s=HANDLE_BUDGET_S)
                    server.serve_pending()
                    if time.monotonic() >= next_sweep:
                        self._sweeper.sweep(time.monotonic_ns())
                        for job in self.jobs.values():
                            job.log.flush()
                        next_sweep = time.monotonic() + SWEEP_INTERVAL_S
                for runner in list(self.jobs):
                    self._end_job(runner, "interrupted: the agent stopped during the job")
            return 0
        finally:
            flag.restore()
            for job in self.jobs.values():
                if not job.log.closed:
                    job.log.abort("the agent failed during the job")
                    job.output.close()
            if self.program is not None:
                self.program.close()

    def _on_event(self, data, size: int) -> None:
        if len(self.jobs) == 1:
            next(iter(self.jobs.values())).log.on_event(data, size)     # all of it: one job, one runner
            return
        try:
            event = events.decode(data, size)
        except events.EventFormatError as exc:
            if self.jobs:
                next(iter(self.jobs.values())).log.on_bad_event(exc)
            else:
                self.outside_events += 1
            return
        if isinstance(event, abi.ProcessEvent):
            self.processes.on_process_event(event.proc)      # a process any job may use
        elif not self.jobs:
            self.outside_events += 1
        else:
            self._file(event)

    def _file(self, event) -> None:
        """Several jobs open: the event goes to the job whose cgroup holds its owner's."""
        job = self.jobs.get(self.router.job_of(owner_cgroup(event)))
        if job is None and isinstance(event, events.Fragment):
            # Only reassembled here: its datagram runs through the program again, and the
            # events that come of it are filed by their owner like any other.
            job = next(iter(self.jobs.values()))
        if job is None:
            self.outside_events += 1
            for open_job in self.jobs.values():
                open_job.events_not_filed += 1
            return
        job.log.on_decoded(event)

    # -- requests ---------------------------------------------------------------------------

    def _request(self, request: dict, peer_pid: int) -> dict:
        op = request.get("op")
        if op == "start":
            return self._start_job(request.get("labels") or {}, request.get("join"), peer_pid,
                                   request.get("repo_policy"))
        if op == "end":
            return self._end_job(self._runner_of(request.get("runner")), "complete")
        if op == "status":
            runner = request.get("runner")
            mine = self.jobs.get(runner) if runner is not None else (
                next(iter(self.jobs.values())) if len(self.jobs) == 1 else None)
            return {"job": None if mine is None else str(mine.output.path),
                    "jobs": {name: str(job.output.path) for name, job in self.jobs.items()},
                    "jobs_started": self.jobs_started, "events_outside_jobs": self.outside_events}
        raise UsageError(f"unknown request {op!r}")

    def _runner_of(self, runner) -> str:
        """The open job a request names by its runner; without one, the only open job."""
        if runner is not None and not isinstance(runner, str):
            raise UsageError("runner must be a string")
        if runner is not None and runner[:LABEL_MAX] in self.jobs:
            return runner[:LABEL_MAX]
        if not self.jobs:
            raise UsageError("no job is open")
        if len(self.jobs) == 1:
            return next(iter(self.jobs))
        raise UsageError(f"{len(self.jobs)} jobs are open (runners {', '.join(map(repr, self.jobs))}): "
                         "name the runner (RUNNER_NAME, or --label runner=NAME)")

    def _start_job(self, labels: dict, join, peer_pid: int, repo_policy=None) -> dict:
        identity = _clean_labels(labels)
        if repo_policy is not None and not isinstance(repo_policy, str):
            raise UsageError("repo_policy must be the policy file's text")
        job_policy = self._policy_for(identity, repo_policy)
        if join is not None and (not isinstance(join, int) or not _is_ancestor(join, peer_pid)):
            raise UsageError(f"--join {join}: not a process that started this request")
        runner = identity.get("runner", "")
        superseded = None
        if runner in self.jobs:
            superseded = self._end_job(runner, "superseded: a new job started before this one ended")["session"]
        if not self.jobs:
            # What opened before the job is not the job's: ended now, outside any session. (With
            # another runner's job open, nothing is ended: its connections are its own.)
            self._sweeper.sweep(time.monotonic_ns(), drain=True)
            self.program.poll(0)
        self.jobs_started += 1
        started_wall = time.time()
        path = self._new_session_path(started_wall)
        output = OutputDir(path)
        blocked = job_policy is not None and job_policy.policy is not None and join is not None
        try:
            log = SessionLog(output, self.fmt, to_epoch=lambda ns: (ns + self._epoch_offset_ns) / 1e9,
                             processes=self.processes, blocking=blocked, rotation=self.rotation,
                             dns_options=self.dns_options)
            log.run_datagram = DatagramRunner.for_program(self.program)
        except BaseException:
            output.close()
            raise
        job = JobSession(self.jobs_started, output, log, identity, started_wall, time.monotonic(),
                         self.program.stats(), runner=runner)
        self.jobs[runner] = job
        job.meta = {"job": identity, "session": path.name, "start": started_wall, "end": None,
                         "status": "recording", "policy": None}
        reply = {"session": str(path)}
        note = job_policy.note if job_policy is not None else (
            "the repository's policy was not used: the agent does not block (no --policy-dir)" if repo_policy else None)
        if note:
            reply["note"] = job.meta["policy_note"] = note
        slot = self.slots.take() if blocked else None
        if blocked and slot is None:
            reply["warning"] = job.meta["not_blocked"] = (
                f"not blocked: the kernel judges {abi.JOB_SLOTS} jobs at once, and runners "
                f"{', '.join(repr(j.runner) for j in self.jobs.values() if j.slot is not None)} have them")
        elif job_policy is not None:
            if blocked:
                self._block_job(job, job_policy, join, slot)
            else:
                reply["warning"] = ("not blocked: " + job_policy.source if job_policy.policy is None else
                                    "not blocked: `job start` was given no --join PID (the process that starts "
                                    "the job's steps)")
                job.meta["not_blocked"] = reply["warning"]
        self._set_scope(job, peer_pid, reply)
        if superseded:
            reply["superseded"] = superseded
        return reply

    def _set_scope(self, job: JobSession, peer_pid: int, reply: dict) -> None:
        """The cgroup the job's events are filed by when other runners' jobs are open: its own
        (blocking), else the cgroup of the runner whose hook asked (a runner service's unit)."""
        if job.cgroup is not None:
            job.scope = job.cgroup.path
        elif self.v2_root is not None:
            try:
                job.scope = process_cgroup(peer_pid, self.v2_root)
            except EnvironmentProblem:
                job.scope = None                   # the hook is gone already: filed as nobody's
        if job.scope is None:
            return
        self.router.add(job.runner, job.scope)
        shared = self.router.sharing(job.runner)
        if shared:
            job.meta["scope_shared"] = (
                f"runner {', '.join(map(repr, shared))} runs in the same cgroup ({job.scope}): while both "
                "have a job open, their connections cannot be told apart and go to the earlier job")
            # beside a not-blocked warning, not instead of it
            reply["warning"] = "; ".join(filter(None, (reply.get("warning"), job.meta["scope_shared"])))

    def _new_session_path(self, started_wall: float) -> Path:
        stamp = datetime.fromtimestamp(started_wall, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        n = self.jobs_started
        while (self.out_dir / f"{stamp}-job{n}").exists():
            n += 1
        return self.out_dir / f"{stamp}-job{n}"

    def _policy_for(self, identity: dict, repo_policy: str | None) -> JobPolicy | None:
        """The job's policy; a broken file leaves the job recorded, not blocked, and says why."""
        if self.blocking is None:
            return None
        try:
            return self.blocking.policies.for_job_with(identity, repo_policy)
        except PolicyError as exc:
            return JobPolicy(None, f"the policy cannot be used: {exc}")

    def _block_job(self, job: JobSession, job_policy: JobPolicy, join: int, slot: int) -> None:
        """The job's policy into the kernel under its slot (anything a job before it left
        there out), and the joining process, with every step it starts, into a cgroup of the
        job's own. Other runners' blocked jobs keep their slots and policies."""
        from cicd_audit.recorder.agent.runner_endpoints import with_runner_endpoints
        maps = self.program.maps
        try:
            clear_job(maps, job_of_slot(slot))
            policy = with_runner_endpoints(job_policy.policy, self.blocking.runner_endpoints)
            PolicyTables.build(policy, list(self.blocking.resolvers)).fill(maps, job_of_slot(slot))
            cgroup = JoinedCgroup(join, self.v2_root, f"cicd-audit-job-{job.number}")
            cgroup.__enter__()
        except BaseException:
            clear_job(maps, job_of_slot(slot))
            self.slots.give(slot)
            raise
        job.cgroup, job.slot = cgroup, slot
        cgroup.scope().fill(maps["job_scope"], slot)
        job.meta["policy"] = job_policy.source

    def _end_job(self, runner: str, status: str) -> dict:
        job = self.jobs[runner]
        if job.slot is not None:
            JobScope.clear(self.program.maps["job_scope"], job.slot)     # from now on, nothing is judged as this job's
        if len(self.jobs) == 1:
            self._sweeper.sweep(time.monotonic_ns(), drain=True)
        elif job.scope is not None:
            owned = {cg for cg, key in self.router.owned_cgroups().items() if key == runner}
            self._sweeper.sweep(time.monotonic_ns(), drain=True, only=lambda conn: conn.proc.cgroup_id in owned)
        self.program.poll(0)            # the drained connections' events are this job's
        del self.jobs[runner]
        self.router.remove(runner)
        if job.cgroup is not None:
            job.cgroup.release()
        if job.slot is not None:
            clear_job(self.program.maps, job_of_slot(job.slot))
            self.slots.give(job.slot)
        if job.events_not_filed:
            job.meta["events_not_filed"] = job.events_not_filed
        now = self.program.stats()
        delta = {k: v - job.kernel_stats_at_start.get(k, 0) for k, v in now.items()}
        stats = job.log.close(delta, ",".join(self.interfaces or ()) or "agent", time.monotonic() - job.started)
        job.meta.update(end=time.time(), status=status if not stats.get("incomplete") else f"{status}; incomplete")
        job.output.write_new(JOB_FILE, json.dumps(job.meta, indent=2, sort_keys=True) + "\n")
        reply = {"session": str(job.output.path), "status": job.meta["status"]}
        if self.analyze:
            reply["analysis"] = _analyze(job.output)
        job.output.close()
        if self.retain is not None:
            for line in prune_sessions(self.out_dir, self.retain):
                notices.say(f"cicd-audit agent: {line}")
        return reply


def prune_sessions(out_dir: Path, keep: int) -> list[str]:
    """Remove the oldest finished sessions (with a job.json) beyond the newest `keep`.
    Session names start with their UTC start time, so name order is age order."""
    finished = sorted(p for p in out_dir.iterdir()
                      if p.is_dir() and not p.is_symlink() and (p / JOB_FILE).exists())
    removed = []
    for session in finished[:max(0, len(finished) - keep)]:
        shutil.rmtree(session, ignore_errors=True)       # fd-based: never follows a link out
        removed.append(f"removed session {session.name} (--retain {keep})")
    return removed


def mark_orphaned_sessions(out_dir: Path) -> list[str]:
    """Sessions a killed agent left open (no job.json) get one saying so: the logs hold what was
    recorded up to the kill, without #close. Returns a line per session marked."""
    marked = []
    for session in sorted(out_dir.iterdir()):
        if not session.is_dir() or session.is_symlink() or (session / JOB_FILE).exists():
            continue
        if not (session / "conn.log").exists():
            continue
        try:
            output = OutputDir(session, recorded=True)
        except UsageError:
            continue
        try:
            meta = {"job": None, "session": session.name, "start": None, "end": None,
                    "status": "interrupted: the agent stopped without ending the job (killed or crashed); "
                              "the logs end where it stopped"}
            output.write_new(JOB_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")
            marked.append(f"session {session.name} was left open by an agent that died: marked interrupted")
        finally:
            output.close()
    return marked


def _is_ancestor(pid: int, of: int) -> bool:
    """Whether pid (not init) started `of`, directly or not: `job start --join` may only move
    a process the requester runs under, never any process of the host."""
    current = of
    for _ in range(64):
        current = parent_pid(current)
        if current <= 1:
            return False
        if current == pid:
            return True
    return False


def _clean_labels(labels: dict) -> dict:
    """The job's identity as given: strings only, bounded; the keys a platform's hook sends."""
    if not isinstance(labels, dict):
        raise UsageError("labels must be a mapping")
    clean = {}
    for key, value in list(labels.items())[:64]:
        if not isinstance(key, str) or not isinstance(value, str):
            raise UsageError("labels must map strings to strings")
        clean[key[:LABEL_MAX]] = value[:LABEL_MAX]
    return clean


def _analyze(output: OutputDir) -> str:
    """analysis.json and summary.md in the session, from `cicd-audit analyze` in a child process.
    Returns "done" or what went wrong (the session's logs stand either way)."""
    problems = []
    for name, fmt in (("analysis.json", "json"), ("summary.md", "markdown")):
        fd = output.create(name)
        try:
            done = subprocess.run([sys.executable, "-m", "cicd_audit.cli", "analyze", str(output.path), "--format", fmt],
                                  stdout=fd, stderr=subprocess.PIPE, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            problems.append(f"{name}: analysis timed out")
            continue
        finally:
            os.close(fd)
        if done.returncode not in (0, 1):
            problems.append(f"{name}: {done.stderr.strip()[-300:]}")
    return "; ".join(problems) or "done"
