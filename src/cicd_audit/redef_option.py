"""`--redef NAME=VALUE`: Zeek's settings, as `record` and `agent` take them (recorder/redefs.py)."""

from __future__ import annotations

import click

from cicd_audit.errors import UsageError

REDEF_OPTION = click.option(
    "--redef", "redefs", multiple=True, metavar="NAME=VALUE",
    help="A Zeek setting as Zeek takes it on its command line, to match how Zeek was run "
         "(repeatable): dns_max_queries, dns_max_compression_chain_depth (counts), "
         "dns_skip_all_auth, dns_skip_all_addl (T or F), Tunnel::max_depth (0 to 4).")


def parse_redef_option(redefs):
    """The settings the --redef values ask for (recorder.redefs.Redefs; its fields None for Zeek's
    defaults); a bad one is a usage error that names it."""
    from cicd_audit.recorder.redefs import RedefError, Redefs, parse_redefs
    if not redefs:
        return Redefs()
    try:
        return parse_redefs(redefs)
    except RedefError as exc:
        raise UsageError(f"--redef: {exc}") from None
