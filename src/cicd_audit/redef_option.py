"""`--redef NAME=VALUE`: Zeek's DNS settings, as `record` and `agent` take them (recorder/logs/dns/redefs.py)."""

from __future__ import annotations

import click

from cicd_audit.errors import UsageError

REDEF_OPTION = click.option(
    "--redef", "redefs", multiple=True, metavar="NAME=VALUE",
    help="A Zeek DNS setting as Zeek takes it on its command line, to match how Zeek was run "
         "(repeatable): dns_max_queries, dns_max_compression_chain_depth (counts), "
         "dns_skip_all_auth, dns_skip_all_addl (T or F).")


def dns_parse_options(redefs):
    """The DNS parser's options the --redef values ask for (None: Zeek's defaults); a bad one is a
    usage error that names it."""
    if not redefs:
        return None
    from cicd_audit.recorder.logs.dns.redefs import RedefError, parse_redefs
    try:
        return parse_redefs(redefs)
    except RedefError as exc:
        raise UsageError(f"--redef: {exc}") from None
