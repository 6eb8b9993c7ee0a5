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
(`status`). A `job start` while a job is open ends that one first, marked
"superseded" (a completed-hook that never ran); stopping the agent ends an
open job marked "interrupted".
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

from cicd_audit import notices
from cicd_audit.errors import UsageError
from cicd_audit.policy import PolicyError
from cicd_audit.recorder.agent.agent_policy import JobPolicy, PolicyDirectory
from cicd_audit.recorder.agent.control import ControlServer
from cicd_audit.recorder.attach.attach import TcAttachment
from cicd_audit.recorder.attach.cgroup_attach import CgroupAttachment, cgroup2_mount
from cicd_audit.recorder.attach.interfaces import choose_interfaces
from cicd_audit.recorder.attach.job_scope import JobScope, JoinedCgroup
from cicd_audit.recorder.drivers.stop_flag import StopFlag
from cicd_audit.recorder.kernel import abi
from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings, require_root
from cicd_audit.recorder.kernel.packet_runner import DatagramRunner
from cicd_audit.recorder.kernel.sweeper import Sweeper
from cicd_audit.recorder.logs import events
from cicd_audit.recorder.logs.ci_steps import parent_pid
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
    meta: dict = field(default_factory=dict)
    cgroup: JoinedCgroup | None = None  # blocking: the job's cgroup, its worker moved in


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
                 rotation: Rotation | None = None) -> None:
        self.out_dir = out_dir
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
        self.job: JobSession | None = None
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
                self.v2_root = cgroup2_mount()
                if self.blocking is not None:
                    JobScope.nobody().fill(self.program.maps["job_scope"])      # until a job starts
                    for redirect in self.blocking.stub_redirects:
                        redirect.fill(self.program.maps["dns_stubs"])
                self.program.wake_on(server.sock.fileno())      # a hook's request is answered at once
                cgroup = self.cgroup or self.v2_root
                if cgroup is not None:
                    stack.enter_context(CgroupAttachment(cgroup, self.program.cgroup_programs))
                else:
                    notices.say("cicd-audit agent: connections will not name their processes: no cgroup v2")
                stack.enter_context(TcAttachment(interfaces, self.program.packet_fn.fd,
                                                 egress_fd=self.program.egress_fn.fd))
                notices.say(f"cicd-audit agent: recording {','.join(interfaces)}; jobs through {self.socket_path}")
                if on_ready is not None:
                    on_ready()
                next_sweep = time.monotonic() + SWEEP_INTERVAL_S
                while not flag.stop:
                    self.program.poll(POLL_MS)
                    server.serve_pending()
                    if time.monotonic() >= next_sweep:
                        self._sweeper.sweep(time.monotonic_ns())
                        if self.job is not None:
                            self.job.log.flush()
                        next_sweep = time.monotonic() + SWEEP_INTERVAL_S
                if self.job is not None:
                    self._end_job("interrupted: the agent stopped during the job")
            return 0
        finally:
            flag.restore()
            if self.job is not None and not self.job.log.closed:
                self.job.log.abort("the agent failed during the job")
                self.job.output.close()
            if self.program is not None:
                self.program.close()

    def _on_event(self, data, size: int) -> None:
        if self.job is not None:
            self.job.log.on_event(data, size)
            return
        try:
            event = events.decode(data, size)
        except events.EventFormatError:
            event = None
        if isinstance(event, abi.ProcessEvent):
            self.processes.on_process_event(event.proc)      # a process the next job may use
        else:
            self.outside_events += 1

    # -- requests ---------------------------------------------------------------------------

    def _request(self, request: dict, peer_pid: int) -> dict:
        op = request.get("op")
        if op == "start":
            return self._start_job(request.get("labels") or {}, request.get("join"), peer_pid,
                                   request.get("repo_policy"))
        if op == "end":
            if self.job is None:
                raise UsageError("no job is open")
            return self._end_job("complete")
        if op == "status":
            return {"job": None if self.job is None else str(self.job.output.path),
                    "jobs_started": self.jobs_started, "events_outside_jobs": self.outside_events}
        raise UsageError(f"unknown request {op!r}")

    def _start_job(self, labels: dict, join, peer_pid: int, repo_policy=None) -> dict:
        identity = _clean_labels(labels)
        if repo_policy is not None and not isinstance(repo_policy, str):
            raise UsageError("repo_policy must be the policy file's text")
        job_policy = self._policy_for(identity, repo_policy)
        if join is not None and (not isinstance(join, int) or not _is_ancestor(join, peer_pid)):
            raise UsageError(f"--join {join}: not a process that started this request")
        superseded = None
        if self.job is not None:
            superseded = self._end_job("superseded: a new job started before this one ended")["session"]
        # What opened before the job is not the job's: ended now, outside any session.
        self._sweeper.sweep(time.monotonic_ns(), drain=True)
        self.program.poll(0)
        self.jobs_started += 1
        started_wall = time.time()
        path = self._new_session_path(started_wall)
        output = OutputDir(path)
        blocked = job_policy is not None and job_policy.policy is not None and join is not None
        try:
            log = SessionLog(output, self.fmt, to_epoch=lambda ns: (ns + self._epoch_offset_ns) / 1e9,
                             processes=self.processes, blocking=blocked, rotation=self.rotation)
            log.run_datagram = DatagramRunner.for_program(self.program)
        except BaseException:
            output.close()
            raise
        self.job = JobSession(self.jobs_started, output, log, identity, started_wall, time.monotonic(),
                              self.program.stats())
        self.job.meta = {"job": identity, "session": path.name, "start": started_wall, "end": None,
                         "status": "recording", "policy": None}
        reply = {"session": str(path)}
        note = job_policy.note if job_policy is not None else (
            "the repository's policy was not used: the agent does not block (no --policy-dir)" if repo_policy else None)
        if note:
            reply["note"] = self.job.meta["policy_note"] = note
        if job_policy is not None:
            if blocked:
                self._block_job(job_policy, join)
            else:
                reply["warning"] = ("not blocked: " + job_policy.source if job_policy.policy is None else
                                    "not blocked: `job start` was given no --join PID (the process that starts "
                                    "the job's steps)")
                self.job.meta["not_blocked"] = reply["warning"]
        if superseded:
            reply["superseded"] = superseded
        return reply

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

    def _block_job(self, job_policy: JobPolicy, join: int) -> None:
        """The job's policy into the kernel (the last job's, learnt addresses included, out), and
        the joining process, with every step it starts, into a cgroup of the job's own."""
        from cicd_audit.recorder.agent.runner_endpoints import with_runner_endpoints
        from cicd_audit.recorder.kernel.block_tables import PolicyTables
        maps = self.program.maps
        for name in ("allow_names", "allow_cidrs", "allow_addrs"):
            for key in maps[name].keys():
                maps[name].delete(key)
        policy = with_runner_endpoints(job_policy.policy, self.blocking.runner_endpoints)
        PolicyTables.build(policy, list(self.blocking.resolvers)).fill(maps)
        self.job.cgroup = JoinedCgroup(join, self.v2_root, f"cicd-audit-job-{self.job.number}")
        self.job.cgroup.__enter__()
        self.job.cgroup.scope().fill(maps["job_scope"])
        self.job.meta["policy"] = job_policy.source

    def _end_job(self, status: str) -> dict:
        job = self.job
        if job.cgroup is not None:
            JobScope.nobody().fill(self.program.maps["job_scope"])     # from now on, nobody is judged
        self._sweeper.sweep(time.monotonic_ns(), drain=True)
        self.program.poll(0)            # the drained connections' events are this job's
        self.job = None
        if job.cgroup is not None:
            job.cgroup.release()
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
