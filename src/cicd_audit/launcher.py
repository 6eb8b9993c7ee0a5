"""The `cicd-audit` command's first step.

`cicd-audit job start|end|status` runs in CI hooks on every job's critical
path: it is answered by a standard-library client (job_client.py) before
the full command line, click and its subcommands load. Everything else,
`--help` included, goes to cicd_audit.cli.
"""

from __future__ import annotations

import sys


def entry() -> None:
    args = sys.argv[1:]
    if args[:1] == ["job"] and args[1:2] and args[1] in ("start", "end", "status") and \
            not {"-h", "--help"} & set(args):
        from cicd_audit.job_client import main
        sys.exit(main(args[1:]))
    from cicd_audit.cli import entry as full_command_line
    full_command_line()
