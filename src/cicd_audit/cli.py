"""cicd-audit's command line. Thin: parse arguments, call the library, turn its
named errors into one clear line and an exit status."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import click

from cicd_audit import __version__
from cicd_audit.errors import RECORDER_FAILED, CicdAuditError, CommandNotRunnable, RecordingIncomplete
from cicd_audit.redef_option import REDEF_OPTION, parse_redef_option
from cicd_audit.safe_text import for_terminal

FORMATS = click.Choice(["tsv", "json"])


def _fail(exc: CicdAuditError, wrapping_command: bool = False) -> None:
    """One line, and the error's exit status; 125 when a command was to be recorded, so a job's
    own status 2 or 3 is never read as the recorder's."""
    click.echo(f"cicd-audit: {for_terminal(str(exc))}", err=True)
    sys.exit(RECORDER_FAILED if wrapping_command else exc.exit_code)


def _ignore_late_signals() -> None:
    """The recording is over and its logs are complete: a SIGINT or SIGTERM from now on (the
    interpreter resets its handlers while it shuts down) must not turn that into a death by signal.
    Blocked, they stay pending and die with the process."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def _finish_recording(stats: dict, out_dir: Path) -> None:
    """The logs are complete: late signals change nothing now; the one-line summary."""
    _ignore_late_signals()
    click.echo(
        f"cicd-audit: {stats['packets']} packets, {stats['non_ip_frames']} non-IP frames, "
        f"{stats['connections']} connections, "
        f"{stats['dns_messages']} DNS messages ({stats['dns_rows']} dns.log rows), "
        f"{stats['ringbuf_drops']} ring-buffer drops, {stats['conn_table_full']} table-full, "
        f"{stats['parse_errors']} unparsable packets, {stats['weirds']} weirds -> {for_terminal(str(out_dir))}",
        err=True,
    )


class _LazyGroup(click.Group):
    """Imports a subcommand's module only when that command runs, so `record`
    starts without loading pandas (which only `analyze` needs)."""

    lazy = {"analyze": ("cicd_audit.analyzers.cli", "analyze"), "store": ("cicd_audit.fleet.cli", "store"),
            "fleet": ("cicd_audit.fleet.cli", "fleet"), "agent": ("cicd_audit.agent_cli", "agent"),
            "job": ("cicd_audit.agent_cli", "job"), "policy": ("cicd_audit.policy_cli", "policy")}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy:
            import importlib
            module, attr = self.lazy[name]
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cicd-audit")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Network audit recorder for CI/CD runners: Zeek conn.log and dns.log from the kernel."""
    if ctx.invoked_subcommand != "record":
        signal.signal(signal.SIGINT, signal.default_int_handler)     # Ctrl-C interrupts as usual


def _quiet_interrupt(signum, frame) -> None:
    os._exit(128 + signum)


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for conn.log, dns.log, weird.log and capture_stats.log.")
@click.option("--iface", "interfaces", multiple=True,
              help="Interface to record (repeatable). Default: every non-loopback interface that is up.")
@click.option("--pcap", type=click.Path(dir_okay=False, path_type=Path),
              help="Read packets from a pcap/pcapng file instead of interfaces.")
@click.option("--format", "fmt", type=FORMATS, default="tsv", show_default=True, help="Zeek TSV or JSON lines.")
@click.option("-C", "--ignore-checksums", is_flag=True,
              help="With --pcap: do not drop packets with bad checksums (Zeek's -C).")
@click.option("--background", is_flag=True,
              help="Detach once capture is active (writes OUT/recorder.pid); stop with `cicd-audit stop OUT`.")
@click.option("--progress/--no-progress", default=None, help="Progress bar for --pcap (default: on a terminal).")
@click.option("--community-id", is_flag=True,
              help="Add Zeek's community_id column to conn.log (its community-id-logging script).")
@click.option("--likely-server-ports", "likely_server_ports", metavar="LIST",
              help="Zeek's likely_server_ports, to match how Zeek was run: comma-separated "
                   "'default', 'bare' (zeek -b), protocol names whose scripts were loaded (http, dns, ...) "
                   "and ports (40190/udp). E.g. 'bare,http'. Default: Zeek's default scripts.")
@REDEF_OPTION
@click.option("--block", is_flag=True,
              help="Enforce --policy in the kernel on the job (COMMAND and what it starts, or --cgroup): "
                   "refuse connections and DNS queries the policy does not allow. Other processes are only recorded.")
@click.option("--block-host", is_flag=True,
              help="Like --block, but judge every process on the host (a dedicated single-job runner); "
                   "the CI runner's own endpoints stay allowed (--runner-endpoints).")
@click.option("--runner-endpoints", "runner_endpoints", type=click.Path(dir_okay=False, path_type=Path),
              help="With --block-host: the CI runner's endpoints to keep allowed (YAML like a policy). "
                   "Default: the shipped list for GitHub Actions and GitLab runners.")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Egress policy YAML (allowed domains and CIDRs); required with --block.")
@click.option("--resolver", "resolvers", multiple=True, metavar="ADDR",
              help="With --block: a DNS resolver queries may go to (repeatable). "
                   "Default: the nameservers of /etc/resolv.conf (and systemd-resolved's upstreams).")
@click.option("--fail-closed", is_flag=True,
              help="With --block: keep blocking if the recorder is killed, until `cicd-audit cleanup`.")
@click.option("--cgroup", type=click.Path(file_okay=False, path_type=Path),
              help="cgroup v2 directory of the job: its processes' sockets are watched and, with --block, judged. "
                   "Default: watch every process and container on the host; with --block and COMMAND, "
                   "judge COMMAND's own cgroup, made for it.")
@click.option("--process-args", is_flag=True,
              help="Fill conn.log's proc.cmdline column. Off by default: command lines can carry secrets.")
@click.option("--nice", type=click.IntRange(0, 19), metavar="N",
              help="Once the job runs, the recorder's nice value goes N above its own, so a busy job keeps "
                   "its CPUs and the recorder catches up from memory (default 10; 0: same priority).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def record(out_dir, interfaces, pcap, fmt, ignore_checksums, background, progress, community_id,
           likely_server_ports, redefs, block, block_host, runner_endpoints, policy_file, resolvers, fail_closed,
           cgroup, process_args, nice, command):
    """Record traffic as Zeek logs: live (optionally around COMMAND), or from --pcap.

    \b
      cicd-audit record --out logs/ -- make test     # record while the command runs
      cicd-audit record --out logs/                  # until Ctrl-C / SIGTERM
      cicd-audit record --out logs/ --background     # until `cicd-audit stop logs/`
      cicd-audit record --pcap trace.pcap --out logs/
      cicd-audit record --out logs/ --block --policy egress.yml -- make test
      cicd-audit record --out logs/ --block --policy egress.yml --cgroup /sys/fs/cgroup/ci/job-42 --background

    With COMMAND, exits with the command's exit status, and with 125 when the
    recorder itself failed (126/127: COMMAND could not be run); DIR/recorder.status
    says which. Exit statuses: docs/exit-status.md.
    """
    try:
        ports = _parse_ports(likely_server_ports)
        zeek = parse_redef_option(redefs)
        blocking = _blocking(block, block_host, runner_endpoints, policy_file, resolvers, fail_closed)
        if block and not block_host and pcap is None and not command and cgroup is None:
            raise_usage("--block judges a job: give its command (-- CMD) or its cgroup (--cgroup DIR); "
                        "--block-host judges every process on the host")
        if block_host and (block or cgroup is not None):
            raise_usage("--block-host judges the whole host: it takes neither --block nor --cgroup")
        if pcap is not None:
            if interfaces or command or background or blocking or cgroup or runner_endpoints or nice is not None:
                raise_usage("--pcap cannot be combined with --iface, --background, --block, --block-host, --cgroup, "
                            "--nice or a command")
            from cicd_audit.recorder.drivers.pcap_replay import record_pcap
            stats = record_pcap(pcap, out_dir, fmt, validate_checksums=not ignore_checksums, progress=progress,
                                likely_server_ports=ports, community_id=community_id, dns_options=zeek.dns,
                                tunnel_max_depth=zeek.tunnel_max_depth)
            _finish_recording(stats, out_dir)
            sys.exit(_recording_status(stats, None))
        from cicd_audit.recorder.drivers.cpu_priority import DEFAULT_NICE_INCREMENT
        from cicd_audit.recorder.drivers.live import record_live
        nice = DEFAULT_NICE_INCREMENT if nice is None else nice
        if background:
            if command:
                raise_usage("--background records until `cicd-audit stop`; it takes no command")
            from cicd_audit.recorder.drivers.background import start_in_background

            def run(on_ready, output):
                result = record_live(output, interfaces, None, fmt, on_ready=on_ready,
                                     likely_server_ports=ports, community_id=community_id, cgroup=cgroup,
                                     blocking=blocking, process_args=process_args, nice=nice,
                                     dns_options=zeek.dns, tunnel_max_depth=zeek.tunnel_max_depth)
                _finish_recording(result.stats, out_dir)
                return _recording_status(result.stats, None)
            sys.exit(start_in_background(out_dir, run))
        result = record_live(out_dir, interfaces, command, fmt, likely_server_ports=ports, community_id=community_id,
                             cgroup=cgroup, blocking=blocking, process_args=process_args, nice=nice,
                             dns_options=zeek.dns, tunnel_max_depth=zeek.tunnel_max_depth)
        _finish_recording(result.stats, out_dir)
        sys.exit(_recording_status(result.stats, result.exit_status if command else None))
    except CicdAuditError as exc:
        _fail(exc, wrapping_command=bool(command) and not isinstance(exc, CommandNotRunnable))


def _recording_status(stats: dict, command_status: int | None) -> int:
    """The exit status of a recording that ran: the command's (or 0), unless something was lost
    (rows the disk refused, events the ring buffer dropped, connections the table could not hold)
    or a signal stopped a replay part-way (128 + the signal)."""
    lost = [f"{stats[key]} {what}" for key, what in (
        ("rows_lost", "log rows could not be written"), ("ringbuf_drops", "kernel events were dropped"),
        ("conn_table_full", "connections were not tracked"),
        ("programs_detached", "interface directions stopped being recorded")) if stats.get(key)]
    if lost:
        click.echo(f"cicd-audit: error: the recording is incomplete: {', '.join(lost)} (see above); "
                   "the logs hold every complete row", err=True)
        return RECORDER_FAILED if command_status is not None else RecordingIncomplete.exit_code
    if stats.get("stopped_by_signal"):
        return 128 + stats["stopped_by_signal"]
    return command_status or 0


def _blocking(block, block_host, runner_endpoints, policy_file, resolvers, fail_closed):
    """The Blocking settings from the command line, or None without --block/--block-host."""
    if runner_endpoints and not block_host:
        raise_usage("--runner-endpoints goes with --block-host (with --block the runner is not judged)")
    if not block and not block_host:
        if policy_file or resolvers or fail_closed:
            raise_usage("--policy, --resolver and --fail-closed go with --block "
                        "(to check logs against a policy, use `cicd-audit analyze --policy`)")
        return None
    option = "--block-host" if block_host else "--block"
    if policy_file is None:
        raise_usage(f"{option} needs --policy FILE (the allowed domains and CIDRs)")
    import ipaddress

    from cicd_audit.policy import load_policy
    from cicd_audit.recorder.attach.dns_stubs import stub_redirects
    from cicd_audit.recorder.drivers.live import Blocking
    from cicd_audit.recorder.kernel.block_tables import detect_resolvers, system_nameservers
    try:
        addresses = [ipaddress.ip_address(r) for r in resolvers] if resolvers else detect_resolvers()
    except ValueError as exc:
        raise_usage(f"--resolver: {exc}")
    policy = load_policy(policy_file)
    if block_host:
        from cicd_audit.recorder.agent.runner_endpoints import with_runner_endpoints
        policy = with_runner_endpoints(policy, runner_endpoints)
        return Blocking(policy, addresses, fail_closed, whole_host=True)
    # The job's lookups through a local stub go to a resolver given, or to one found behind the stub.
    return Blocking(policy, addresses, fail_closed, stub_redirects=stub_redirects(system_nameservers(), addresses))


def _parse_ports(text):
    if text is None:
        return None
    from cicd_audit.recorder.kernel.zeek_defaults import LikelyServerPortsError, parse_likely_server_ports
    try:
        return parse_likely_server_ports(text)
    except LikelyServerPortsError as exc:
        raise_usage(f"--likely-server-ports: {exc}")


def raise_usage(message: str) -> None:
    from cicd_audit.errors import UsageError
    raise UsageError(message)


@main.command()
def cleanup():
    """Remove what recorders left attached: --fail-closed pins, and filters of killed recorders on old kernels."""
    from cicd_audit.recorder.attach import cleanup as cleanup_module
    try:
        removed = cleanup_module.cleanup_all()
    except CicdAuditError as exc:
        _fail(exc)
    for line in removed:
        click.echo(f"removed {line}")
    if not removed:
        click.echo("nothing to remove", err=True)


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
def stop(out_dir):
    """Stop a recorder started with --background and wait until its logs are complete.

    Exits 0 when the recording is complete, 4 when recorder.status says it is not (or there is
    none), 2 when OUT_DIR has no running recorder (nothing is signalled)."""
    from cicd_audit.recorder.drivers.background import stop as stop_recorder
    try:
        status = stop_recorder(out_dir)
    except CicdAuditError as exc:
        _fail(exc)
    if status is None or status.get("recording") != "complete":
        why = "; ".join(map(str, status.get("failures") or ())) if status else "it left no recorder.status"
        click.echo(f"cicd-audit: error: recording stopped, but it is incomplete: {why or 'unknown'}; logs in "
                   f"{out_dir}", err=True)
        sys.exit(RecordingIncomplete.exit_code)
    click.echo(f"cicd-audit: recording stopped; logs in {out_dir}", err=True)


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to keep the demo's logs (default: a new temporary directory).")
def demo(out_dir):
    """Record a small CI job in a network-namespace lab, then show its logs and the analysis."""
    from cicd_audit.demo import run_demo
    sys.exit(run_demo(out_dir))


@main.command(hidden=True)
@click.option("--force", is_flag=True, help="Compile again even when the cache has the program.")
@click.option("--prebuilt", type=click.Path(file_okay=False, path_type=Path),
              help="Also write each variant's bytecode here, for runners without clang or kernel headers "
                   "(package and image builds; the recorder looks in /usr/lib/cicd-audit/programs, or "
                   "$CICD_AUDIT_PROGRAMS).")
def prepare(force, prebuilt):
    """Compile the BPF program variants into the machine's cache (install time), so `record` starts in
    well under a second. Without it, the first `record` of each kind compiles once (1.5-4 s)."""
    from cicd_audit.recorder.kernel.bpf_program import prepare as prepare_programs
    try:
        for label, report in prepare_programs(force=force, prebuilt=prebuilt):
            how = ("already cached" if report.source == "cache"
                   else f"prebuilt in {report.cache_path}" if report.source == "prebuilt"
                   else f"compiled and cached in {report.cache_path}" if report.cache_path
                   else f"compiled, NOT cached ({report.cache_problem})")
            click.echo(f"cicd-audit: {label} program: {how}; loaded in {report.seconds:.2f} s", err=True)
    except CicdAuditError as exc:
        _fail(exc)
    # Installing is when a missing compiler or python3-dev can still be fixed: say which path runs.
    from cicd_audit import compiled
    compiled.load_all()
    click.echo(compiled.notice() or "cicd-audit: per-frame and per-message paths: compiled parts in use", err=True)


def entry() -> None:
    """The `cicd-audit` command. Until a command sets up its own handling (record stops cleanly on
    SIGINT and SIGTERM from its first line; the others get Python's KeyboardInterrupt back in main()),
    Ctrl-C while the program starts ends it quietly, with no traceback from the middle of an import."""
    signal.signal(signal.SIGINT, _quiet_interrupt)
    main()


if __name__ == "__main__":
    entry()
