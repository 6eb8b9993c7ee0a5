"""The compiled parts of the per-frame and per-message paths (setup.cfg has everything else).

Each C file is built as an optional extension: without a compiler or Python's
headers the package installs and runs on its pure-Python reference, and
cicd_audit.compiled says so in one line. The source's SHA-256 is built in, so
a module built from another version of its source is not used (an editable
install must be rebuilt after its C changes: `pip install -e .`).
"""

import hashlib
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
SOURCES = {
    "cicd_audit.zeeklog._tsvrow": "src/cicd_audit/zeeklog/_tsvrow.c",
    "cicd_audit.recorder.logs.dns._wirename": "recorder/logs/dns/_wirename.c",
    "cicd_audit.recorder.drivers._replay": "recorder/drivers/_replay.c",
    "cicd_audit.recorder.logs._uid": "recorder/logs/_uid.c",
    "cicd_audit.recorder.logs._conn_rows": "recorder/logs/_conn_rows.c",
    "cicd_audit.recorder.logs.dns._lookup_row": "recorder/logs/dns/_lookup_row.c",
    "cicd_audit.recorder.kernel._ringtake": "recorder/kernel/_ringtake.c",
}
# Headers a source includes: part of what it is built from (and so of its SHA-256).
DEPENDS = {
    "cicd_audit.recorder.logs._conn_rows": ["bpf/cicd_audit.h"],
}


def extension(name: str, source: str) -> Extension:
    depends = DEPENDS.get(name, [])
    digest = hashlib.sha256(b"".join((HERE / path).read_bytes() for path in [source, *depends])).hexdigest()
    return Extension(name, [source], depends=depends, optional=True, define_macros=[("SOURCE_SHA256", f'"{digest}"')],
                     extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                         "-Werror=implicit-function-declaration"])


setup(ext_modules=[extension(name, source) for name, source in SOURCES.items()])
