"""Errors the command line turns into one clear message and an exit status.

Library code raises these; only the CLI prints them. Each carries the hint a
user needs to fix the problem, so no traceback is ever the message.
"""


class CicdAuditError(Exception):
    """Base class: an expected failure with a message meant for a person."""

    exit_code = 2


class UsageError(CicdAuditError):
    """The command was called with arguments that cannot work."""


class InputError(CicdAuditError):
    """An input file (pcap, log, policy) is missing or malformed."""


class EnvironmentProblem(CicdAuditError):
    """The machine lacks something the recorder needs (root, bcc, headers, a kernel feature)."""

    exit_code = 3
