"""`cicd-audit policy suggest`: from audit runs to an allowlist (policy_suggest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cicd_audit.errors import CicdAuditError, InputError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def policy():
    """Egress policies: write one from what audit runs did."""


@policy.command("suggest")
@click.argument("sessions", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, readable=True, path_type=Path))
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the policy here instead of standard output (refused if the file exists).")
def suggest(sessions, out_file):
    """Print the allowlist these sessions earned: the names and addresses the job reached, grouped and
    limited to their ports, with what a finding flagged left out (as comments). Review it, then enforce
    it: `cicd-audit record --block --policy FILE -- COMMAND`.

    \b
      cicd-audit policy suggest logs/run-1 logs/run-2 > egress.yml
    """
    from cicd_audit.policy_suggest import suggest_policy
    from cicd_audit.zeeklog.reader import has_logs, load_logs

    try:
        for d in sessions:
            if not has_logs(d):
                raise InputError(f"{d}: no conn.log or dns.log in it (plain, .gz or JSON)")
        text = suggest_policy(load_logs(*sessions), [str(d) for d in sessions])
        if out_file is None:
            sys.stdout.write(text)
            return
        try:
            with open(out_file, "x") as f:
                f.write(text)
        except FileExistsError:
            raise InputError(f"{out_file}: exists already (not overwritten)") from None
        except OSError as exc:
            raise InputError(f"{out_file}: cannot write it ({exc.strerror})") from None
        click.echo(f"cicd-audit: suggested policy written to {out_file}; review it before --block", err=True)
    except CicdAuditError as exc:
        click.echo(f"cicd-audit: {exc}", err=True)
        sys.exit(exc.exit_code)
