"""recorder.status: one JSON object that says how the recording went, readable by a later CI step.

Created when the session starts (through the session directory's descriptor,
never following a link) saying ``"recording": "in progress"``, with room for
the final object kept allocated on disk, so the final word still fits when
the job has filled the disk meanwhile. At the end the final object is written
in place with one write and the file cut to its length. A recorder killed
with SIGKILL leaves "in progress" behind: the logs then lack the connections
that were still open.

The job can write the directory, so it can also forge this file: it is a
convenience for telling a job's failure from the recorder's, not evidence.
The exit status of `record` (and of `stop`) is what the job cannot change.

API: StatusFile(output_dir).finish(status: dict) -> str | None (why it could not be written)
"""

from __future__ import annotations

import json
import os

from cicd_audit.recorder.logs.output_dir import OutputDir
from cicd_audit.zeeklog.disk_room import DISK_FULL, keep_room

STATUS_FILE = "recorder.status"
ROOM = 8192             # for the final object: the failures it lists are short lines


class StatusFile:
    def __init__(self, output: OutputDir):
        self._fd = output.create(STATUS_FILE)
        try:
            os.write(self._fd, (json.dumps({"recording": "in progress", "pid": os.getpid()}) + "\n").encode())
        except OSError:
            pass                  # said at the end, when the final object cannot be written either
        err = keep_room(self._fd, 0, ROOM)
        # Why the final object may not fit (the disk is full), or None.
        self.no_room = f"{STATUS_FILE}: {os.strerror(err)} (errno {err})" if err in DISK_FULL else None

    def close(self) -> None:
        """Close it without a final object (a session that does not start)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def finish(self, status: dict) -> str | None:
        """Write the final object in place; returns why not, or None."""
        data = (json.dumps(status) + "\n").encode()
        try:
            written = os.pwrite(self._fd, data, 0)
            if written != len(data):          # never half an object: empty says "unknown"
                os.ftruncate(self._fd, 0)
                return f"short write ({written} of {len(data)} bytes)"
            os.ftruncate(self._fd, written)
            return None
        except OSError as exc:
            return exc.strerror
        finally:
            os.close(self._fd)
