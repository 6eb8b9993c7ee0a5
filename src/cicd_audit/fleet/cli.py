"""``cicd-audit store`` and ``cicd-audit fleet``, and ``analyze --store``: thin commands over the fleet library.

STORE is a path or an fsspec URL (s3://bucket/prefix, gs://, abfs://).
Credentials and endpoints come from the usual places (AWS_* variables,
fsspec's FSSPEC_S3_ENDPOINT_URL and friends, ~/.config/fsspec), on the
client and on every Dask worker alike. Errors: one line, exit 2.
"""

from __future__ import annotations

import sys
import time

import click
import pandas as pd

from ..errors import CicdAuditError, EnvironmentProblem, UsageError

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
_CTX = {"help_option_names": ["-h", "--help"]}
_SCHEDULER_HELP = "Dask scheduler: 'local' (a LocalCluster on this machine), 'sync' (this process) or an address (tcp://host:8786)."


def _fail(command: str, e: Exception) -> None:
    from ..safe_text import for_terminal

    # the message may quote a log line, a job.json value or a store key: data, never terminal control
    click.echo(f"cicd-audit {command}: error: {for_terminal(e)}", err=True)
    sys.exit(getattr(e, "exit_code", EXIT_ERROR))


def _missing_extra(e: ImportError) -> EnvironmentProblem:
    # the machine lacks them (exit 3); setup.cfg declares no 'fleet' extra yet: name the packages themselves
    return EnvironmentProblem(f"the fleet commands need Dask and pyarrow ({e.name} is missing): "
                      "pip install 'dask[dataframe]' distributed pyarrow fsspec (and s3fs, gcsfs or adlfs for object storage)")


# ---- cicd-audit store ----------------------------------------------------------------


@click.group("store", context_settings=_CTX)
def store():
    """The columnar store of sessions (Parquet, partitioned by date, repository and workflow)."""


@store.command("add", context_settings=_CTX)
@click.argument("sessions", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--to", "store_url", required=True, metavar="STORE", help="Store path or fsspec URL (s3://bucket/prefix).")
@click.option("--quiet", "-q", is_flag=True, help="No line per session.")
def store_add(sessions, store_url, quiet):
    """Add session directories (conn.log/dns.log, ours or real Zeek's) to STORE.

    A session's identity comes from its job.json (docs/fleet.md), else its
    directory name and "unknown" repository and workflow. Adding a session
    again replaces it.
    """
    try:
        from .ingest import add_sessions
        from .store import Store

        st = Store.open(store_url, create=True)

        def say(m):
            if not quiet:
                click.echo(f"{m['session']}: {m['repository']} {m['workflow']}, "
                           f"{m['rows']['conn']} conn + {m['rows']['dns']} dns rows -> {len(m['files'])} files")

        added = add_sessions(st, sessions, progress=say)
    except ImportError as e:
        _fail("store add", _missing_extra(e))
    except (CicdAuditError, OSError) as e:
        _fail("store add", e)
    click.echo(f"cicd-audit store add: {len(added)} session(s) in {store_url}", err=True)


@store.command("list", context_settings=_CTX)
@click.argument("store_url", metavar="STORE")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True)
def store_list(store_url, fmt):
    """List the sessions in STORE, oldest first."""
    try:
        from .catalog import read_catalog
        from .store import Store

        cat = read_catalog(Store.open(store_url)).drop(columns="files")
    except ImportError as e:
        _fail("store list", _missing_extra(e))
    except (CicdAuditError, OSError) as e:
        _fail("store list", e)
    _print_frame(cat, fmt)


# ---- cicd-audit fleet ----------------------------------------------------------------


def _common(f):
    f = click.option("--until", help="End of the time range, exclusive (UTC; e.g. 2025-10-13).")(f)
    f = click.option("--since", help="Start of the time range (UTC; e.g. 2025-10-06 or 2025-10-06T12:00).")(f)
    f = click.option("--scheduler", default="local", show_default=True, help=_SCHEDULER_HELP)(f)
    f = click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True)(f)
    f = click.option("--store", "store_url", required=True, metavar="STORE", help="Store path or fsspec URL.")(f)
    return f


def _time(value, option):
    if value is None:
        return None
    try:
        t = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise UsageError(f"{option} {value!r}: not a date or time (2025-10-06, 2025-10-06T12:00Z)") from None
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _run_query(name, fn, fmt):
    try:
        out = fn()
    except ImportError as e:
        _fail(f"fleet {name}", _missing_extra(e))
    except (CicdAuditError, OSError) as e:
        _fail(f"fleet {name}", e)
    _print_frame(out, fmt)


def _print_frame(df: pd.DataFrame, fmt: str) -> None:
    if fmt == "json":
        click.echo(df.to_json(orient="records", date_format="iso", indent=1))
    elif fmt == "csv":
        click.echo(df.to_csv(index=False), nl=False)
    elif df.empty:
        click.echo("(nothing)")
    else:
        with pd.option_context("display.width", 200, "display.max_columns", 50, "display.max_colwidth", 60):
            click.echo(df.to_string(index=False))


@click.group("fleet", context_settings=_CTX)
def fleet():
    """Questions about every stored job at once: indicators, new destinations, top talkers."""


@fleet.command("indicator", context_settings=_CTX)
@click.argument("indicators", nargs=-1, required=True)
@_common
def fleet_indicator(indicators, store_url, fmt, scheduler, since, until):
    """Every job that looked up, resolved to, or connected to an INDICATOR in the time range.

    An indicator is a domain suffix (evil.com matches evil.com and every name
    below it), an IP address or a CIDR (203.0.113.0/24).
    """
    from .queries import find_indicator

    _run_query("indicator", lambda: find_indicator(store_url, indicators, since=_time(since, "--since"),
                                                   until=_time(until, "--until"), scheduler=scheduler), fmt)


@fleet.command("new-destinations", context_settings=_CTX)
@_common
@click.option("--repository", help="Only this repository (org/name).")
@click.option("--workflow", help="Only this workflow.")
def fleet_new_destinations(store_url, fmt, scheduler, since, until, repository, workflow):
    """Registered domains each workflow looked up for the first time in its stored history, by week."""
    from .queries import new_destinations

    _run_query("new-destinations", lambda: new_destinations(
        store_url, since=_time(since, "--since"), until=_time(until, "--until"), repository=repository,
        workflow=workflow, scheduler=scheduler), fmt)


@fleet.command("top-talkers", context_settings=_CTX)
@_common
@click.option("--by", type=click.Choice(["destination", "session", "workflow"]), default="destination", show_default=True)
@click.option("-n", "--top", "n", type=click.IntRange(min=1), default=20, show_default=True)
def fleet_top_talkers(store_url, fmt, scheduler, since, until, by, n):
    """The biggest senders of bytes (conn.log orig_bytes), per destination address, session or workflow."""
    from .queries import top_talkers

    _run_query("top-talkers", lambda: top_talkers(store_url, by=by, n=n, since=_time(since, "--since"),
                                                  until=_time(until, "--until"), scheduler=scheduler), fmt)


# ---- cicd-audit analyze --store --------------------------------------------------------


def analyze_store_command(store_url, scheduler, baseline_runs, dirs, policy_path, baseline_dirs, fmt, fail_on, min_severity):
    """``cicd-audit analyze --store``: exits like ``analyze`` (0 clean, 1 findings at --fail-on, 2 error)."""
    from ..analyzers.findings import at_or_above

    try:
        if dirs:
            raise UsageError("give session directories or --store, not both (add them with `cicd-audit store add`)")
        from .analysis import analyze_store

        policy = None
        if policy_path:
            from ..policy import load_policy

            policy = load_policy(policy_path)
        extra = _extra_baseline(baseline_dirs)
        result = analyze_store(store_url, policy=policy, baseline_runs=baseline_runs, scheduler=scheduler,
                               extra_baseline=extra, progress=_ProgressLine("analyze --store"))
    except ImportError as e:
        _fail("analyze", _missing_extra(e))
    except (CicdAuditError, OSError) as e:
        _fail("analyze", e)
    from .report import render

    click.echo(render(result, fmt, min_severity, store_url), nl=False)
    if fail_on and len(at_or_above(result.findings, fail_on)):
        sys.exit(EXIT_FINDINGS)
    sys.exit(EXIT_CLEAN)


#: Seconds between two progress lines of long work (none for work that ends sooner).
PROGRESS_EVERY_S = 10.0


class _ProgressLine:
    """``progress(done, total)`` for long work: a line on stderr at most every ``PROGRESS_EVERY_S``."""

    def __init__(self, what: str):
        self.what = what
        self.start = self.last = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        elapsed = int(now - self.start)
        click.echo(f"cicd-audit {self.what}: {done:,} of {total:,} sessions ({100 * done // max(total, 1)} %), "
                   f"{elapsed // 60} min {elapsed % 60} s", err=True)


def _extra_baseline(dirs) -> list:
    """--baseline DIR with --store: each directory joins every session's stored baseline."""
    import os

    from ..zeeklog.reader import load_logs
    from .reading import SessionLogs

    out = []
    for d in dirs:
        logs = load_logs(d)
        out.append((os.path.basename(os.path.normpath(d)), SessionLogs(conn=logs.conn, dns=logs.dns)))
    return out

