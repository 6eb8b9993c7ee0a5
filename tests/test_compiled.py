"""cicd_audit.compiled: a compiled module is used only when it is built from the source beside it,
and the recorder says in one line, once, what runs in pure Python instead."""

import subprocess
import sys

import pytest

from cicd_audit import compiled, notices


@pytest.fixture
def own_notices(monkeypatch):
    """compiled's record of what is not in use, empty and this test's own, nothing announced yet."""
    monkeypatch.setattr(compiled, "_unavailable", {})
    monkeypatch.setattr(compiled, "_announced", False)


def test_load_refuses_a_module_built_from_another_source(tmp_path, own_notices):
    source = tmp_path / "_tsvrow.c"
    source.write_text("/* not the source it was built from */\n")
    assert compiled.load("cicd_audit.zeeklog._tsvrow", source) is None
    assert "built from another version of _tsvrow.c" in compiled.unavailable()["cicd_audit.zeeklog._tsvrow"]


def test_load_says_when_a_module_is_missing(tmp_path, own_notices):
    assert compiled.load("cicd_audit.zeeklog._no_such_module", tmp_path / "_no_such_module.c") is None
    assert "not built" in compiled.unavailable()["cicd_audit.zeeklog._no_such_module"]


def test_pure_python_on_request_and_the_notice_says_so():
    code = ("from cicd_audit.zeeklog import tsv_format; from cicd_audit import compiled; "
            "assert tsv_format._compiled is None; print(compiled.notice())")
    out = subprocess.run([sys.executable, "-c", code], env={"CICD_AUDIT_PURE_PYTHON": "1"},
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("cicd-audit: note: parts of the per-frame and per-message paths run in pure Python")
    assert "_tsvrow: CICD_AUDIT_PURE_PYTHON=1" in out


def test_announce_says_it_once(own_notices):
    compiled._unavailable["cicd_audit.x._part"] = "not built"
    lines = []
    previous = notices.set_sink(lines.append)
    try:
        compiled.announce("cicd-audit agent")
        compiled.announce("cicd-audit agent")
    finally:
        notices.set_sink(previous)
    assert lines == ["cicd-audit agent: note: parts of the per-frame and per-message paths run in pure Python, slower "
                     "(_part: not built)"]


def test_every_compiled_part_is_loaded_by_one_of_its_users():
    """setup.py builds each C file of SOURCES; compiled.load_all() must reach every one, or the
    install's "compiled parts in use" line would not be about all of them."""
    import re
    from pathlib import Path

    setup_py = (Path(__file__).resolve().parents[1] / "setup.py").read_text()
    built = set(re.findall(r'"(cicd_audit\.[\w.]+)": "[\w/]+\.c"', setup_py))
    assert len(built) >= 4
    code = "import sys; from cicd_audit import compiled; print(compiled.load_all() == {}, *sorted(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded[0] == "True" and built <= set(loaded[1:]), built - set(loaded[1:])


def test_load_refuses_a_module_whose_header_changed(tmp_path, own_notices):
    """A module built from a C file and a header it includes (setup.py's DEPENDS) is refused when
    either changed since: the kernel's struct layout is part of what it reads."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    source, header = repo / "recorder" / "logs" / "_conn_rows.c", repo / "bpf" / "cicd_audit.h"
    assert compiled.load("cicd_audit.recorder.logs._conn_rows", source, header) is not None
    edited = tmp_path / "cicd_audit.h"
    edited.write_bytes(header.read_bytes() + b"/* a field added */\n")
    assert compiled.load("cicd_audit.recorder.logs._conn_rows", source, edited) is None
    assert "another version of _conn_rows.c or cicd_audit.h" in compiled.unavailable()["cicd_audit.recorder.logs._conn_rows"]
