"""``cicd-audit analyze``: the thin command over ``analysis.analyze``.

Exit status: 0 clean (no finding at or above ``--fail-on``, or no ``--fail-on``);
1 findings at or above ``--fail-on``; otherwise the error's own status, as for
every command (``cicd_audit.errors``): 2 usage or input error (missing
directory, malformed log, bad policy file), 3 the machine lacks something.
"""

from __future__ import annotations

import os
import sys

import click

from ..errors import CicdAuditError, InputError
from .findings import ANALYZERS, SEVERITIES, at_or_above

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2


def _load(dirs, what):
    from ..zeeklog.reader import has_logs
    from .loading import load_for_analysis

    for d in dirs:
        if not has_logs(d):
            raise InputError(f"{what} {d}: no conn.log or dns.log in it (plain, .gz or JSON)")
    return load_for_analysis(*dirs)  # dns.log straight into the analyzers' index, chunk by chunk


_ANALYZER_HELP = "; ".join(f"{k}: {v}" for k, v in ANALYZERS.items())


@click.command(
    "analyze",
    help=(
        "Analyze recorded sessions (directories of Zeek conn.log/dns.log, ours or real Zeek's) "
        "for DNS tunnels and unexpected destinations, and print what to look at and why.\n\n"
        "Exit status: 0 clean, 1 findings at or above --fail-on, 2 usage or input error."
    ),
    epilog="Analyzers: " + _ANALYZER_HELP,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.argument("dirs", nargs=-1, required=False, type=click.Path(exists=True, file_okay=False, readable=True))
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False), help="Policy YAML (allowed domains and CIDRs).")
@click.option(
    "--baseline",
    "baseline_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, readable=True),
    help="Session directory of an earlier run of the same job (repeatable); report what is new.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json", "markdown", "html"]), default="text", show_default=True,
    help="text for a terminal, json for machines, markdown for $GITHUB_STEP_SUMMARY, html for one self-contained page.",
)
@click.option(
    "--html", "html_path", type=click.Path(dir_okay=False, writable=True),
    help="Also write the report as one self-contained HTML page (no network fetches) to this file: a CI artifact.",
)
@click.option("--fail-on", type=click.Choice(SEVERITIES), help="Exit 1 when a finding is at or above this severity.")
@click.option(
    "--min-severity", type=click.Choice(SEVERITIES), default="info", show_default=True,
    help="Only show findings at or above this severity (the summary still counts all).",
)
@click.option(
    "--services", "services_files", multiple=True, type=click.Path(exists=True, dir_okay=False, readable=True),
    help="Your own list of exfiltration/out-of-band service domains (repeatable; format of analyzers/data/exfil_services.yml), "
    "added to the packaged list.",
)
@click.option("--store", "store_url", metavar="STORE",
              help="Analyze every session of a fleet store (path or s3://...; see `cicd-audit store add`) on Dask.")
@click.option("--scheduler", default="local", show_default=True,
              help="With --store: 'local' (a Dask LocalCluster), 'sync' (this process) or a scheduler address.")
@click.option("--baseline-runs", type=click.IntRange(min=0), default=10, show_default=True,
              help="With --store: each session's baseline is this many earlier runs of its workflow.")
def analyze(dirs, policy_path, baseline_dirs, fmt, html_path, fail_on, min_severity, services_files, store_url, scheduler, baseline_runs):
    if store_url:  # the fleet path: same analyzers, per session, partition-parallel (docs/fleet.md)
        if fmt == "html" or html_path:
            raise click.UsageError("the HTML report is per session: give session directories, not --store")
        from ..fleet.cli import analyze_store_command

        analyze_store_command(store_url, scheduler, baseline_runs, dirs, policy_path, baseline_dirs, fmt, fail_on, min_severity)
    if not dirs:
        raise click.UsageError("give at least one session directory (or --store STORE)")
    from .analysis import analyze as run
    from .analysis import session_names
    from .jobs import session_jobs
    from .report import RENDERERS
    from .report_model import build_report

    try:
        policy = None
        if policy_path:
            from ..policy import load_policy

            policy = load_policy(policy_path)
        from .services import load_services

        services_list = load_services(extra=services_files)
        logs = _load(dirs, "session")
        baseline = _load(baseline_dirs, "baseline") if baseline_dirs else None
        names = session_names(logs, [os.path.basename(os.path.normpath(d)) for d in dirs])
        result = run(logs, policy=policy, baseline=baseline, sessions=names, services_list=services_list,
                     jobs=session_jobs(dirs, names), name_features=False)  # the report shows domains, not names
    except CicdAuditError as e:
        from ..safe_text import for_terminal

        click.echo(f"cicd-audit analyze: error: {for_terminal(e)}", err=True)  # may quote a log line
        sys.exit(e.exit_code)
    report = build_report(result, logs, fail_on=fail_on)  # computed once, rendered as often as asked
    if html_path:
        _write_html(html_path, RENDERERS["html"](result, min_severity=min_severity, report=report))
    click.echo(RENDERERS[fmt](result, min_severity=min_severity, report=report), nl=False)
    if fail_on and len(at_or_above(result.findings, fail_on)):
        sys.exit(EXIT_FINDINGS)
    sys.exit(EXIT_CLEAN)


def _write_html(path, page: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(page)
    except OSError as e:
        click.echo(f"cicd-audit analyze: error: cannot write {path}: {e.strerror}", err=True)
        sys.exit(EXIT_ERROR)


main = analyze
