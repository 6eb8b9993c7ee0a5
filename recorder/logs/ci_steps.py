"""Which CI step a process runs in, from the environment the CI platform gave it.

GitHub's runner starts each step's processes with GITHUB_ACTION (the step's
id: its `id:`, or `__run`, `__run_2`, ... for a script step, `__owner_repo`
for an action) and, for an action, GITHUB_ACTION_REPOSITORY and
GITHUB_ACTION_REF. A process inherits them, so the process itself or its
nearest ancestor that still has them names the step: a program that clears
its environment is still found under the step that started it.

A CI environment is full of secrets. Only the variables above are taken from
/proc/<pid>/environ; the rest never leaves this module. Reading another
process's environment needs root (the recorder's), and a process that exited
names no step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STEP_VARIABLES = (b"GITHUB_ACTION", b"GITHUB_ACTION_REPOSITORY", b"GITHUB_ACTION_REF")
ANCESTORS_MAX = 32              # parents followed up from the process
ENVIRON_READ_MAX = 1 << 20      # bytes of an environment read, at most
VALUE_MAX = 256


@dataclass(frozen=True)
class Step:
    id: str
    action: str | None = None           # "actions/setup-node@v4" for an action step

    def __str__(self) -> str:
        return f"{self.id} ({self.action})" if self.action else self.id


def step_of(pid: int, proc_root: Path = Path("/proc")) -> Step | None:
    """The step of pid, or of its nearest ancestor with the step's variables; None outside any step."""
    for _ in range(ANCESTORS_MAX):
        if pid <= 1:
            return None
        found = _step_variables(proc_root / str(pid))
        if found.get(b"GITHUB_ACTION"):
            return _step(found)
        pid = parent_pid(pid, proc_root)
    return None


def _step(found: dict[bytes, str]) -> Step:
    repository, ref = found.get(b"GITHUB_ACTION_REPOSITORY"), found.get(b"GITHUB_ACTION_REF")
    action = f"{repository}@{ref}" if repository and ref else repository
    return Step(found[b"GITHUB_ACTION"], action or None)


def _step_variables(proc_dir: Path) -> dict[bytes, str]:
    """The step variables in a process's environment (nothing else is kept)."""
    try:
        with open(proc_dir / "environ", "rb") as f:
            raw = f.read(ENVIRON_READ_MAX)
    except OSError:
        return {}
    found = {}
    for entry in raw.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name in STEP_VARIABLES:
            found[name] = value[:VALUE_MAX].decode("utf-8", "replace")
    return found


def parent_pid(pid: int, proc_root: Path = Path("/proc")) -> int:
    """The parent's pid from /proc/<pid>/stat (after the comm, which may hold spaces and
    parentheses); 0 for a process that is gone."""
    try:
        stat = (proc_root / str(pid) / "stat").read_bytes()
        return int(stat.rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0
