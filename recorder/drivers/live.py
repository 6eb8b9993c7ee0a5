"""Record live traffic at TC on this namespace's interfaces.

Attaches (TC on the interfaces; the cgroup socket hooks that name each
connection's process, and, in blocking mode, refuse connections), then
(optionally) starts the job's command, so its first packet is seen; polls
the ring buffer; sweeps timers once a second; and on the command's exit,
SIGINT or SIGTERM detaches, drains every connection and closes the logs, so
they are complete whenever the recorder exits.

Everything attached is held by this process's file descriptors, so a killed
recorder leaves nothing behind; only --fail-closed pins the programs, so
that blocking outlives a crash (`cicd-audit cleanup` removes them).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cicd_audit import notices
from cicd_audit.errors import CommandNotRunnable, EnvironmentProblem, UsageError
from cicd_audit.recorder.attach import udp_connect_hooks
from cicd_audit.recorder.attach.attach import TcAttachment, cleanup
from cicd_audit.recorder.attach.attach_watch import AttachmentWatch
from cicd_audit.recorder.attach.cgroup_attach import CgroupAttachment, cgroup2_mount
from cicd_audit.recorder.attach.exec_hooks import attach_exec_hooks
from cicd_audit.recorder.attach.interfaces import choose_interfaces
from cicd_audit.recorder.attach.job_scope import RECORD_SLOT, CgroupEntry, JobCgroup, JobScope, job_of_slot
from cicd_audit.recorder.drivers.cpu_priority import DEFAULT_NICE_INCREMENT, yield_to_job
from cicd_audit.recorder.drivers.recording import Recording
from cicd_audit.recorder.drivers.stop_flag import StopFlag
from cicd_audit.recorder.kernel.backlog import HANDLE_BUDGET_S
from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings, require_root
from cicd_audit.recorder.logs.dns.wire import ParseOptions
from cicd_audit.recorder.logs.output_dir import OutputDir
from cicd_audit.recorder.logs.processes import ProcessTable
from cicd_audit.recorder.logs.session import SessionLog

POLL_MS = 100
SWEEP_INTERVAL_S = 1.0
CATCH_UP_NOTICE_EVENTS = 10_000      # events left to handle at the end worth a line (about a second of work)


@dataclass
class Blocking:
    """What blocking mode enforces: the policy, and the resolvers DNS may go to;
    on whom: the job (the command's cgroup, or --cgroup), or the whole host."""

    policy: object                       # cicd_audit.policy.Policy
    resolvers: Sequence = ()             # addresses allowed on port 53
    fail_closed: bool = False            # keep blocking if the recorder dies
    whole_host: bool = False             # --block-host: every process is judged
    stub_redirects: Sequence = ()        # dns_stubs.StubRedirect: the job's DNS to a local stub goes upstream


@dataclass
class LiveResult:
    exit_status: int          # the command's exit status, or 0 without a command
    stats: dict


def record_live(out_dir: Path | OutputDir, interfaces: Sequence[str] | None = None,
                command: Sequence[str] | None = None,
                fmt: str = "tsv", on_ready: Callable[[], None] | None = None,
                settings: ProgramSettings | None = None, likely_server_ports: frozenset | None = None,
                community_id: bool = False, cgroup: Path | None = None, blocking: Blocking | None = None,
                process_args: bool = False, nice: int = DEFAULT_NICE_INCREMENT,
                dns_options: ParseOptions | None = None, tunnel_max_depth: int | None = None) -> LiveResult:
    """cgroup: where the socket hooks go (default: the cgroup v2 root, so every
    process and container on the host is covered); blocking: enforce a policy;
    nice: how far below the job's the recorder's CPU priority goes once the job runs;
    dns_options, tunnel_max_depth: Zeek's DNS settings and Tunnel::max_depth, when not its
    defaults (recorder/redefs.py).

    SIGINT and SIGTERM stop the recording cleanly from the first line on: one
    arriving during start-up lets the current step finish, starts no command,
    and closes complete logs (exit 128 + the signal with a command, else 0)."""
    with StopFlag() as flag:
        return _record_live(flag, out_dir, interfaces, command, fmt, on_ready, settings, likely_server_ports,
                            community_id, cgroup, blocking, process_args, nice, dns_options, tunnel_max_depth)


def _record_live(flag: StopFlag, out_dir, interfaces, command, fmt, on_ready, settings, likely_server_ports,
                 community_id, cgroup, blocking, process_args, nice, dns_options, tunnel_max_depth) -> LiveResult:
    require_root()                  # before any log file exists
    interfaces = choose_interfaces(interfaces or (), blocking is not None)
    job_cgroup = cgroup
    v2_root = cgroup2_mount()
    cgroup = cgroup or v2_root
    if cgroup is None and blocking is not None:
        raise EnvironmentProblem("blocking mode needs cgroup v2 (mount it, or name a cgroup v2 directory "
                                 "with --cgroup)")
    if blocking is not None and not blocking.whole_host and job_cgroup is None and not command:
        raise UsageError("--block judges a job: give its command (-- CMD) or its cgroup (--cgroup DIR); "
                         "--block-host judges every process on the host")
    for line in cleanup.remove_stale():
        notices.say(f"cicd-audit: removed what a killed recorder left: {line}")
    epoch_offset_ns = time.time_ns() - time.monotonic_ns()   # bpf_ktime_get_ns is CLOCK_MONOTONIC
    session = SessionLog(out_dir, fmt, to_epoch=lambda ns: (ns + epoch_offset_ns) / 1e9,
                         add_community_id=community_id, processes=ProcessTable(keep_cmdline=process_args),
                         blocking=blocking is not None, dns_options=dns_options)
    settings = settings or ProgramSettings(pcap_mode=False, attribution=True, block=blocking is not None)
    with Recording(session, settings, likely_server_ports, unfinished="recording stopped by an error",
                   tunnel_max_depth=tunnel_max_depth) as recording:
        try:
            return _run(flag, recording, interfaces, command, on_ready, cgroup, job_cgroup, v2_root, blocking, nice)
        finally:
            if flag.child is not None and flag.child.poll() is None:
                flag.child.terminate()


def _run(flag: StopFlag, recording: Recording, interfaces: list[str], command: Sequence[str] | None,
         on_ready: Callable[[], None] | None, cgroup: Path | None, job_cgroup: Path | None, v2_root: Path | None,
         blocking: Blocking | None, nice: int) -> LiveResult:
    """Attach, start the command, record until it exits or a signal comes, detach, and close the logs."""
    session, program = recording.session, recording.program
    pin_dir = None
    started = time.monotonic()
    exit_status = 0
    with contextlib.ExitStack() as attached:
        enter_job = None            # run in the command's process before exec: joins the job
        if blocking is not None:
            scope, enter_job = _job_scope(attached, blocking, job_cgroup, v2_root, command)
            _load_policy(program, blocking)
            scope.fill(program.maps["job_scope"], RECORD_SLOT)
            if scope.cgroup is not None:
                for redirect in blocking.stub_redirects:
                    redirect.fill(program.maps["dns_stubs"])
            notices.say(f"cicd-audit: blocking judges {scope.describe()}")
            if blocking.fail_closed:
                pin_dir = cleanup.make_pin_dir(cleanup.pin_dir_for(os.getpid()))
            if scope.cgroup is not None:
                cgroup = scope.cgroup           # the hooks watch the job
        # The hooks first: a socket that connects before TC sees its packets still has an owner.
        if _attach_cgroup_hooks(attached, program, cgroup, pin_dir, required=blocking is not None):
            attach_exec_hooks(attached, program, session.processes, "cicd-audit")
        attached.enter_context(TcAttachment(interfaces, program.packet_fn.fd, egress_fd=program.egress_fn.fd,
                                            pin_dir=pin_dir))
        watch = AttachmentWatch(interfaces, {"ingress": program.packet_fn.fd, "egress": program.egress_fn.fd})
        if on_ready is not None:
            on_ready()
        if command and flag.stop:
            exit_status = 128 + flag.signum     # stopped before the command could start
        elif command:
            try:
                flag.child = subprocess.Popen(list(command), preexec_fn=enter_job)
            except OSError as exc:
                raise CommandNotRunnable(f"cannot run {command[0]!r}: {exc.strerror}",
                                         not_found=isinstance(exc, FileNotFoundError)) from exc
        yield_to_job(nice)              # after the command started: it keeps the priority it had
        next_sweep = time.monotonic() + SWEEP_INTERVAL_S
        while not flag.stop:
            program.poll(POLL_MS, budget_s=HANDLE_BUDGET_S)
            if flag.child is not None and flag.child.poll() is not None:
                exit_status = _exit_status(flag.child.returncode)
                break
            if time.monotonic() >= next_sweep:
                recording.sweeper.sweep(time.monotonic_ns())
                _say_detached(watch, session)
                session.flush()
                next_sweep = time.monotonic() + SWEEP_INTERVAL_S
        if command and flag.stop and flag.child is not None and flag.child.poll() is None:
            # Stopped by a signal that came while the command was being started (before the
            # handler could know it): the command is stopped too, and the status says so.
            flag.child.terminate()
            flag.child.wait()
            exit_status = 128 + flag.signum
        # Let the kernel's last events (the command's final packets) arrive.
        program.poll(POLL_MS)
        _say_detached(watch, session)
    waiting = program.backlog.events
    if waiting >= CATCH_UP_NOTICE_EVENTS:
        notices.say(f"cicd-audit: writing the {waiting:,} events still waiting from a burst "
                    f"(at most {program.backlog.peak_events:,} waited at once)")
    stats = recording.finish(time.monotonic_ns(), ",".join(interfaces), time.monotonic() - started,
                             command_status=exit_status if command else None)
    stats["programs_detached"] = watch.lost
    if pin_dir is not None:         # a clean stop: fail-closed has nothing left to guard
        cleanup.remove_pin_dir(pin_dir)
    return LiveResult(exit_status, stats)


def _job_scope(stack: contextlib.ExitStack, blocking: Blocking, job_cgroup: Path | None, v2_root: Path,
               command: Sequence[str] | None) -> tuple[JobScope, Callable[[], None] | None]:
    """Whom blocking judges, and the step that puts the command among them (None: no command,
    or the whole host).

    A cgroup made for the command is removed when the recording ends (after
    the command's exit), and what the job left running in it is killed."""
    if blocking.whole_host:
        return JobScope.whole_host(), None
    if job_cgroup is not None:
        scope = JobScope.of_cgroup(job_cgroup, v2_root)
        return scope, stack.enter_context(CgroupEntry(job_cgroup)).enter if command else None
    job = stack.enter_context(JobCgroup(v2_root))
    return job.scope(), job.enter


def _load_policy(program: CaptureProgram, blocking: Blocking) -> None:
    from cicd_audit.recorder.kernel.block_tables import PolicyTables
    PolicyTables.build(blocking.policy, list(blocking.resolvers)).fill(program.maps, job_of_slot(RECORD_SLOT))


def _attach_cgroup_hooks(stack: contextlib.ExitStack, program: CaptureProgram, cgroup: Path | None,
                         pin_dir: Path | None, required: bool) -> bool:
    """The socket hooks; without them (no cgroup v2, an old kernel) recording goes on, unattributed
    (False)."""
    try:
        if cgroup is None:
            raise EnvironmentProblem("no cgroup v2 hierarchy is mounted")
        hooks = udp_connect_hooks.cgroup_programs(stack, program, "cicd-audit")
        stack.enter_context(CgroupAttachment(cgroup, hooks, pin_dir=pin_dir))
    except EnvironmentProblem as exc:
        if required:
            raise
        notices.say(f"cicd-audit: connections will not name their processes: {exc}")
        return False
    return True


def _say_detached(watch: AttachmentWatch, session: SessionLog) -> None:
    """A program that stopped running is a recorder failure: stderr, weird.log, recorder.status."""
    for line in watch.check():
        notices.say(f"cicd-audit: error: {line}")
        session.record_failure(line)
        session.write_recorder_weird(time.time(), "cicd_audit_program_detached", line)


def _exit_status(returncode: int) -> int:
    """A shell's convention: killed by signal N exits 128 + N."""
    return 128 - returncode if returncode < 0 else returncode
