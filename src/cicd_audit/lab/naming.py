"""Names of everything a lab creates, and how to tell which process a name belongs to.

Every name carries the creating process's pid and a counter (cat<pid>x<n>c/s/k
for the client, server and container namespaces), so parallel runs never
collide, and a name whose pid is gone belongs to a killed run: teardown.py
sweeps those.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path

NAMESPACE = re.compile(r"^cat(\d+)x\d+[csk]$")
CGROUP = re.compile(r"^cicd-audit-lab-(\d+)x\d+$")
WORKDIR = re.compile(r"^cicd-audit-lab-(\d+)x\d+-")

_counter = itertools.count()


@dataclass(frozen=True)
class LabNames:
    tag: str                  # <pid>x<n>

    @classmethod
    def new(cls) -> LabNames:
        return cls(f"{os.getpid()}x{next(_counter)}")

    client_ns = property(lambda self: f"cat{self.tag}c")
    server_ns = property(lambda self: f"cat{self.tag}s")
    container_ns = property(lambda self: f"cat{self.tag}k")
    # interface names: at most 15 characters (a pid has at most 7 digits)
    client_if = property(lambda self: f"cv{self.tag}")
    server_if = property(lambda self: f"sv{self.tag}")
    container_host_if = property(lambda self: f"kv{self.tag}")
    container_if = property(lambda self: f"ke{self.tag}")
    cgroup = property(lambda self: f"cicd-audit-lab-{self.tag}")
    workdir_prefix = property(lambda self: f"cicd-audit-lab-{self.tag}-")


def owned_by_dead_process(name: str, pattern: re.Pattern) -> bool:
    """True when name is a lab name whose creating process is gone."""
    m = pattern.match(name)
    return bool(m) and not Path(f"/proc/{m.group(1)}").exists()
