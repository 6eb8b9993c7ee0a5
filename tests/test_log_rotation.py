"""Log rotation within a long recording (the agent's --rotate-interval/--rotate-size): each log
ends as Zeek's rotated logs do, under a name nothing held, and a new one goes on (pure tier)."""

from __future__ import annotations

import os
import time

import pytest

from cicd_audit.errors import UsageError
from cicd_audit.quantities import parse_quantity
from cicd_audit.recorder.logs.output_dir import OutputDir
from cicd_audit.recorder.logs.session import Rotation
from cicd_audit.zeeklog.reader import read_log
from cicd_audit.zeeklog.schema import load_schema
from cicd_audit.zeeklog.writer import LogWriter, open_close_timestamp

OPEN = 1_760_000_000.0


def weird(n: int) -> dict:
    return {"ts": OPEN + n, "name": f"w{n}", "notice": False, "source": "test"}


@pytest.fixture
def out(tmp_path):
    d = OutputDir(tmp_path / "session")
    yield d
    d.close()


def test_a_rotated_log_is_closed_renamed_and_followed_by_a_new_one(out):
    w = LogWriter(out.path, load_schema("weird"), opener=out.create, open_time=OPEN, flush_interval=0)
    w.write(weird(1))
    rotated = w.rotate(out.rename_new, close_time=OPEN + 60)
    w.write(weird(2))
    w.close(OPEN + 120)
    assert rotated == f"weird.{open_close_timestamp(OPEN)}.log"
    first, second = (out.path / rotated).read_text(), (out.path / "weird.log").read_text()
    assert first.startswith("#separator") and first.endswith(f"#close\t{open_close_timestamp(OPEN + 60)}\n")
    assert f"#open\t{open_close_timestamp(OPEN + 60)}\n" in second
    assert [r["name"] for r in read_log(out.path / rotated)[1]] == ["w1"]
    assert [r["name"] for r in read_log(out.path / "weird.log")[1]] == ["w2"]
    assert w.rows == 2


def test_a_rotated_name_never_replaces_a_file(out):
    w = LogWriter(out.path, load_schema("weird"), opener=out.create, open_time=OPEN, flush_interval=0)
    names = [w.rotate(out.rename_new, close_time=OPEN) for _ in range(3)]     # same open time each time
    w.close()
    stamp = open_close_timestamp(OPEN)
    assert names == [f"weird.{stamp}.log", f"weird.{stamp}-2.log", f"weird.{stamp}-3.log"]
    os.symlink("/etc/passwd", out.path / f"conn.{stamp}.log")    # planted by someone else: never followed
    c = LogWriter(out.path, load_schema("weird"), opener=lambda name: out.create("conn.log"), open_time=OPEN)
    c.close()
    assert out.rename_new("conn.log", f"conn.{stamp}.log") == f"conn.{stamp}-2.log"
    assert os.readlink(out.path / f"conn.{stamp}.log") == "/etc/passwd"


def test_only_files_of_the_recording_are_renamed(out):
    (out.path / "other.log").write_text("x")
    with pytest.raises(UsageError, match="not a file of this recording"):
        out.rename_new("other.log", "moved.log")


def test_a_failed_log_is_not_rotated(out):
    w = LogWriter(out.path, load_schema("weird"), opener=out.create, open_time=OPEN, flush_interval=0)
    w.failure = "No space left on device (errno 28)"
    assert w.rotate(out.rename_new) is None and not w.closed
    w.close()


def test_rotation_is_due_by_time_or_size(out):
    w = LogWriter(out.path, load_schema("weird"), opener=out.create, open_time=OPEN, flush_interval=0)
    now = time.monotonic()
    assert not Rotation(seconds=60).due(w, now) and Rotation(seconds=60).due(w, w.opened + 60)
    assert not Rotation(size=10_000).due(w, now)
    for n in range(1000):
        w.write(weird(n))
    assert Rotation(size=10_000).due(w, now) and w.size > 10_000
    w.close()


@pytest.mark.parametrize("text, kind, value", [("30m", "duration", 1800.0), ("1h", "duration", 3600.0),
                                               ("90", "duration", 90.0), ("100M", "size", 100 * 1024**2),
                                               ("1GiB", "size", 1024**3), ("512kb", "size", 512 * 1024)])
def test_quantities_read_as_people_write_them(text, kind, value):
    assert parse_quantity(text, kind) == value


@pytest.mark.parametrize("text, kind", [("x", "duration"), ("1mb", "duration"), ("0", "size"), ("5q", "size")])
def test_a_quantity_that_is_not_one_says_what_is_expected(text, kind):
    with pytest.raises(ValueError, match="must be more than 0|is not a"):
        parse_quantity(text, kind)


def test_a_session_with_rotated_logs_is_read_whole_in_order(out):
    from cicd_audit.zeeklog.reader import load_logs
    w = LogWriter(out.path, load_schema("weird"), opener=out.create, open_time=OPEN, flush_interval=0)
    for n in range(5):
        w.write(weird(n))
        w.rotate(out.rename_new, close_time=OPEN)       # one second: -2, -3, ... names
    w.write(weird(5))
    w.close()
    conn = LogWriter(out.path, load_schema("conn"), opener=out.create, open_time=OPEN)
    conn.close()
    assert len(list(out.path.glob("weird.*.log"))) == 5
    assert list(load_logs(out.path).weird["name"]) == [f"w{n}" for n in range(6)]
