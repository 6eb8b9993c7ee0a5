"""The client side of the agent's control socket (recorder/agent/control.py serves it).

One JSON request line, one JSON reply line, over a Unix stream socket.
Standard library only (and cicd_audit.errors), and no more of it than
needed (no pathlib): the CI hooks run this on every job's critical path with
`python3 -SI` (job_client.py), where imports are most of the time spent.
"""

from __future__ import annotations

import json
import socket

from cicd_audit.errors import EnvironmentProblem

DEFAULT_SOCKET = "/run/cicd-audit/agent.sock"
MESSAGE_MAX = 64 * 1024
REPLY_TIMEOUT_S = 900.0         # `job end` runs the analysis before it replies


def request(socket_path, message: dict) -> dict:
    """Send one request to the agent; its reply. EnvironmentProblem when no agent answers."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(REPLY_TIMEOUT_S)
    try:
        sock.connect(str(socket_path))
        sock.sendall(json.dumps(message).encode() + b"\n")
        reply = json.loads(read_line(sock))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise EnvironmentProblem(f"no agent is listening on {socket_path} (start `cicd-audit agent`)") from exc
    except PermissionError as exc:
        raise EnvironmentProblem(f"{socket_path}: permission denied (root or the agent's socket group)") from exc
    except (OSError, ValueError) as exc:
        raise EnvironmentProblem(f"the agent on {socket_path} did not answer: {exc}") from exc
    finally:
        sock.close()
    if not isinstance(reply, dict):
        raise EnvironmentProblem(f"the agent on {socket_path} answered nonsense")
    return reply


def read_line(sock: socket.socket) -> str:
    """One message line (either side); ValueError past MESSAGE_MAX bytes."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MESSAGE_MAX:
            raise ValueError("message too long")
    return data.decode()
