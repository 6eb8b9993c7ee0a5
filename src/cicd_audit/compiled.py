"""The compiled parts of the per-frame and per-message paths: load one, or say why it is not used.

Each compiled module (setup.py builds them, optionally) has a pure-Python
reference beside it that gives the same output; the module only makes it
faster. ``load`` returns None when the module is missing, was built from
another version of its C source (an editable install not rebuilt after an
edit), or ``CICD_AUDIT_PURE_PYTHON=1`` asks for the reference (benchmarks,
A/B runs). ``unavailable()`` lists why; ``announce()`` says it in one line,
once per process, when a recording starts.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path
from types import ModuleType

from cicd_audit import notices

PURE_PYTHON_ENV = "CICD_AUDIT_PURE_PYTHON"
REBUILD_HINT = "pip install --editable . rebuilds it"

_unavailable: dict[str, str] = {}
_announced = False


def load(module: str, source: Path, *depends: Path) -> ModuleType | None:
    """The compiled ``module`` (dotted name) built from ``source`` and the headers it includes
    (``depends``, as setup.py's DEPENDS lists them), or None."""
    if os.environ.get(PURE_PYTHON_ENV) == "1":
        _unavailable[module] = f"{PURE_PYTHON_ENV}=1"
        return None
    try:
        compiled = importlib.import_module(module)
    except ImportError:
        _unavailable[module] = "not built (no C compiler or Python headers when it was installed)"
        return None
    if source.is_file():        # a source tree; an installed wheel ships no C source
        built_from = getattr(compiled, "SOURCE_SHA256", "")
        files = [source, *depends]
        if built_from != hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest():
            _unavailable[module] = f"built from another version of {' or '.join(f.name for f in files)}: {REBUILD_HINT}"
            return None
    return compiled


# The modules that load a compiled part (setup.py's SOURCES), each beside its pure-Python reference.
USERS = ("cicd_audit.recorder.drivers.bulk_replay", "cicd_audit.recorder.logs.dns.message",
         "cicd_audit.recorder.logs.dns.plain_pair", "cicd_audit.recorder.logs.conn_rows",
         "cicd_audit.recorder.logs.uid", "cicd_audit.recorder.kernel.ringbuf", "cicd_audit.zeeklog.tsv_format")


def load_all() -> dict[str, str]:
    """Load every compiled part (importing the modules that use them); returns unavailable()."""
    for user in USERS:
        importlib.import_module(user)
    return unavailable()


def unavailable() -> dict[str, str]:
    """Compiled modules not in use, and why."""
    return dict(_unavailable)


def notice(who: str = "cicd-audit") -> str | None:
    """One line for the recorder's output when any compiled part is not in use."""
    if not _unavailable:
        return None
    why = "; ".join(f"{name.rsplit('.', 1)[-1]}: {reason}" for name, reason in sorted(_unavailable.items()))
    return f"{who}: note: parts of the per-frame and per-message paths run in pure Python, slower ({why})"


def announce(who: str = "cicd-audit") -> None:
    """notice(), once per process."""
    global _announced
    line = notice(who)
    if line and not _announced:
        _announced = True
        notices.say(line)
