"""The agent's control socket: one JSON request line, one JSON reply line.

A Unix stream socket, by default /run/cicd-audit/agent.sock, mode 0600
(root only), or 0660 with --socket-group: the group a runner's hook scripts
run as. Every connection's peer is checked again with SO_PEERCRED (root, or
a member of that group), so a socket file made reachable by mistake still
refuses the job's unprivileged user.

Requests: {"op": "start", "labels": {...}, "join": PID}, {"op": "end"}, {"op": "status"};
the handler also gets the requesting process's pid.
Replies: {"ok": true, ...} or {"ok": false, "error": "..."}.
"""

from __future__ import annotations

import grp
import json
import os
import socket
import stat
import struct
from collections.abc import Callable
from pathlib import Path

from cicd_audit.control_protocol import read_line
from cicd_audit.errors import CicdAuditError, EnvironmentProblem, UsageError

CLIENT_TIMEOUT_S = 1.0          # a client that stalls cannot hold the agent's loop longer


class ControlServer:
    """Listens on socket_path for the `with` block; serve_pending() answers waiting clients."""

    def __init__(self, socket_path: Path, group: str | None, handle: Callable[[dict, int], dict]) -> None:
        self.path = Path(socket_path)
        self.gid = _group_id(group) if group else None
        self.handle = handle
        self.sock: socket.socket | None = None

    def __enter__(self) -> ControlServer:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        if self.path.is_socket():
            if _answers(self.path):
                raise UsageError(f"an agent is already listening on {self.path}")
            self.path.unlink()               # left by a killed agent
        elif self.path.exists() or self.path.is_symlink():
            raise UsageError(f"{self.path} exists and is not a socket: not replaced")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)          # the socket is born 0600
        try:
            sock.bind(str(self.path))
        except OSError as exc:
            sock.close()
            raise EnvironmentProblem(f"cannot listen on {self.path}: {exc.strerror}") from exc
        finally:
            os.umask(old_umask)
        if self.gid is not None:
            os.chown(self.path, 0, self.gid)
            os.chmod(self.path, 0o660)
        sock.listen(16)
        sock.setblocking(False)
        self.sock = sock
        return self

    def __exit__(self, *exc_info) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            try:
                if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                    self.path.unlink()
            except FileNotFoundError:
                pass

    def serve_pending(self) -> None:
        """Answer every client waiting now (never blocks when none is)."""
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return
            with conn:
                conn.setblocking(True)
                conn.settimeout(CLIENT_TIMEOUT_S)
                try:
                    reply = self._answer(conn)
                except (OSError, ValueError) as exc:
                    reply = {"ok": False, "error": f"bad request: {exc}"}
                try:
                    conn.sendall(json.dumps(reply).encode() + b"\n")
                except OSError:
                    pass                      # the client went away; the job's state is what it is

    def _answer(self, conn: socket.socket) -> dict:
        pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        if not (uid == 0 or self.gid is not None and (gid == self.gid or self.gid in _groups_of(pid))):
            return {"ok": False, "error": "permission denied: root or the agent's socket group only"}
        request = json.loads(read_line(conn))
        if not isinstance(request, dict):
            raise ValueError("a request is a JSON object")
        try:
            return {"ok": True, **self.handle(request, pid)}
        except CicdAuditError as exc:
            return {"ok": False, "error": str(exc)}


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _group_id(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise UsageError(f"--socket-group {name}: no such group") from None


def _groups_of(pid: int) -> set[int]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Groups:"):
                return {int(g) for g in line.split()[1:]}
    except OSError:
        pass
    return set()
