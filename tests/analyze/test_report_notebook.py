"""notebooks/explore_session.ipynb without being told which session: it opens the newest one it finds.

Executed the way tests/analyze/test_notebook.py does (this interpreter as the
kernel), from a working directory holding two sessions, the CI job and the
exfiltrating one; whichever was written last is the one it must open.
"""

import os
import shutil

import pytest

from .test_notebook import execute, outputs


def text_of(nb) -> str:
    return "".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") for o in outputs(nb))


@pytest.mark.parametrize("newest", ["ci-exfil", "ci-clean"])
def test_opens_the_newest_session_by_default(exfil_session, ci_session, tmp_path, newest):
    work = tmp_path / "work"
    for i, src in enumerate(sorted([exfil_session, ci_session], key=lambda p: p.name == newest)):
        dst = shutil.copytree(src, work / "sessions" / src.name)
        for p in dst.iterdir():
            os.utime(p, (1_700_000_000 + i * 3600,) * 2)  # the newest is written an hour after the other
    nb = execute(None, None, work)
    assert not [o for o in outputs(nb) if o.output_type == "error"]
    text = text_of(nb)
    assert f"session {work / 'sessions' / newest} " in text
    assert f"1 session ({newest})" in text  # the report's header names it too
    assert ("example.net" in text) is (newest == "ci-exfil")
    assert sum("image/png" in o.get("data", {}) for o in outputs(nb)) >= 4  # timeline, bytes, thresholds, names


def test_says_what_to_do_when_there_is_no_session(tmp_path):
    from nbclient.exceptions import CellExecutionError

    (tmp_path / "empty").mkdir()
    with pytest.raises(CellExecutionError, match="no session found: set SESSION"):
        execute(None, None, tmp_path / "empty")
