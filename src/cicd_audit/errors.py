"""Errors the command line turns into one clear message and an exit status.

Library code raises these; only the CLI prints them. Each carries the hint a
user needs to fix the problem, so no traceback is ever the message.

Exit statuses (docs/exit-status.md): 2 usage or input, 3 the machine lacks
something, 4 a recording that ran but is incomplete. `record -- COMMAND`
passes the command's own status through and reports every failure of its own
as RECORDER_FAILED (125, as env(1) and timeout(1) do), so a job that exits 2
or 3 is never mistaken for the recorder.
"""

RECORDER_FAILED = 125       # record -- COMMAND: the recorder failed (the command's status is in recorder.status)
COMMAND_NOT_EXECUTABLE = 126
COMMAND_NOT_FOUND = 127


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


class RecordingIncomplete(CicdAuditError):
    """The recording ran but lost rows (disk full, I/O error): the logs are valid but shorter."""

    exit_code = 4


class CommandNotRunnable(UsageError):
    """`record -- COMMAND` could not start COMMAND: 127 when it does not exist, 126 otherwise (as a shell says)."""

    def __init__(self, message: str, not_found: bool):
        super().__init__(message)
        self.exit_code = COMMAND_NOT_FOUND if not_found else COMMAND_NOT_EXECUTABLE
