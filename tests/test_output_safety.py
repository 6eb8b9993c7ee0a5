"""The job cannot turn the recorder's output against root, and a failing recorder is told apart.

The recorder runs as root; the job can write --out. Each test plants what a
hostile job would and checks that nothing outside --out changes, that no file
is overwritten or half-written, and that the exit status and recorder.status
say whose failure it was. `record --pcap` drives the pcap cases (the same
session and writer code as live); the live cases run in the netns lab.
"""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from shared_data import shared
from small_disk import fill, small_tmpfs

from cicd_audit.lab import CICD_AUDIT, DNS_NAME, V4
from cicd_audit.zeeklog.reader import read_log

pytestmark = [pytest.mark.root]

CLI = str(Path(sys.executable).with_name("cicd-audit"))
WIKIPEDIA = shared("zeek-oracle", "wikipedia", "trace.pcap")


def record_pcap(pcap: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "record", "--pcap", str(pcap), "--out", str(out), "--no-progress"],
                          capture_output=True, text=True, timeout=300)


def one_error_line(r: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture
def victim(tmp_path) -> Path:
    """A file outside --out that root must never touch."""
    path = tmp_path / "victim"
    path.write_text("precious\n")
    return path


def test_a_link_planted_at_out_is_refused(tmp_path, victim):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "out").symlink_to(target)
    r = record_pcap(WIKIPEDIA, tmp_path / "out")
    assert r.returncode == 2 and "symbolic link" in one_error_line(r)
    assert list(target.iterdir()) == []


@pytest.mark.parametrize("planted", ["capture_stats.log", "conn.log", "recorder.status"])
def test_a_link_planted_under_a_log_name_is_never_followed(tmp_path, victim, planted):
    out = tmp_path / "out"
    out.mkdir()
    (out / planted).symlink_to(victim)
    r = record_pcap(WIKIPEDIA, out)
    assert r.returncode == 2 and "already holds a recording" in one_error_line(r)
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in out.iterdir()) == [planted]


NOBODY = 65534


def _job_owned_link_to(tmp_path: Path, target: Path) -> Path:
    """$RUNNER_TEMP's parent as on a runner: a directory the job's user owns, where the job has put
    `_temp` as a link to a directory of its choosing. Returns the path of the link."""
    work = tmp_path / "work"
    work.mkdir()
    os.chown(work, NOBODY, NOBODY)
    link = work / "_temp"
    link.symlink_to(target)
    os.lchown(link, NOBODY, NOBODY)
    return link


def test_a_link_planted_in_a_parent_of_out_is_refused(tmp_path):
    """The job replaced a parent of --out with a link (to /etc, or to another job's recording):
    refused, one line naming the link, nothing created where it points."""
    target = tmp_path / "etc"
    target.mkdir()
    link = _job_owned_link_to(tmp_path, target)
    r = record_pcap(WIKIPEDIA, link / "net")
    assert r.returncode == 2, r.stderr
    line = one_error_line(r)
    assert f"{link} (in --out {link / 'net'}) is a symbolic link that users other than root can change" in line
    assert list(target.iterdir()) == []
    stop = subprocess.run([CLI, "stop", str(link / "net")], capture_output=True, text=True, timeout=60)
    assert stop.returncode == 2 and "symbolic link that users other than root can change" in one_error_line(stop)


def test_a_link_only_root_could_have_made_is_followed(tmp_path):
    """A link in a root-owned directory nobody else can write (like /var/run -> /run) is the
    system's, not the job's: --out through it works."""
    real = tmp_path / "real"
    real.mkdir()
    system = tmp_path / "system"
    system.mkdir(mode=0o755)
    (system / "run").symlink_to(real)
    r = record_pcap(WIKIPEDIA, system / "run" / "net")
    assert r.returncode == 0, r.stderr
    assert (real / "net" / "conn.log").exists()


def test_existing_logs_are_never_overwritten(tmp_path):
    out = tmp_path / "out"
    assert record_pcap(WIKIPEDIA, out).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = record_pcap(WIKIPEDIA, out)
    assert r.returncode == 2 and "already holds a recording" in one_error_line(r)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_complete_recording_says_so(tmp_path):
    out = tmp_path / "out"
    assert record_pcap(WIKIPEDIA, out).returncode == 0
    status = json.loads((out / "recorder.status").read_text())
    assert status == {"recording": "complete", "failures": [], "rows_lost": 0, "rows_lost_by_log": {},
                      "ringbuf_drops": 0, "conn_table_full": 0, "command_status": None}


# -- disk full -----------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 96 KiB tmpfs, unmounted whatever happens."""
    with small_tmpfs(tmp_path, "96k") as mount:
        yield mount


def _dns_heavy_capture(path: Path, transactions: int) -> None:
    from frames import ether
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import IP, UDP
    from scapy.utils import wrpcap
    packets = []
    for i in range(transactions):
        name = f"host-{i:05d}.example.test"
        q = ether() / IP(src="192.0.2.1", dst="192.0.2.53") / UDP(sport=20000 + i, dport=53) / DNS(
            id=i, rd=1, qd=DNSQR(qname=name))
        a = ether() / IP(src="192.0.2.53", dst="192.0.2.1") / UDP(sport=53, dport=20000 + i) / DNS(
            id=i, qr=1, qd=DNSQR(qname=name), an=DNSRR(rrname=name, rdata="192.0.2.9"))
        q.time, a.time = 1_700_000_000 + i * 0.01, 1_700_000_000 + i * 0.01 + 0.001
        packets += [q, a]
    wrpcap(str(path), packets)


def test_disk_full_keeps_complete_rows_and_fails_loudly(tmp_path, small_disk):
    pcap = tmp_path / "dns.pcap"
    _dns_heavy_capture(pcap, 1500)           # ~300 KB of logs for a 96 KiB disk
    out = small_disk / "out"
    r = record_pcap(pcap, out)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 4, (r.returncode, r.stderr)
    errors = [line for line in r.stderr.splitlines() if line.startswith("cicd-audit: error:")]
    assert any("No space left on device" in line for line in errors), r.stderr
    assert any("the recording is incomplete" in line for line in errors), r.stderr
    for log in out.glob("*.log"):
        data = log.read_bytes()
        assert not data or data.endswith(b"\n"), f"{log.name} ends inside a row"
        if data and log.name in ("conn.log", "dns.log"):
            read_log(log)                     # every row that is there parses
    conn_rows = sum(1 for line in (out / "conn.log").read_text().splitlines() if not line.startswith("#"))
    assert conn_rows < 1500                  # rows were lost, and said so above
    _closed_with_losses_counted(out)


def test_a_disk_full_before_the_start_records_nothing_and_says_so(tmp_path, small_disk):
    """With no room for the logs' headers and the space they hold for their ends, no log could be
    closed nor the status written: one line, status 2 (--out unusable), no file left behind."""
    pcap = tmp_path / "dns.pcap"
    _dns_heavy_capture(pcap, 5)
    fill(small_disk / "filler")
    out = small_disk / "out"
    r = record_pcap(pcap, out)
    assert r.returncode == 2, (r.returncode, r.stderr)
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"cicd-audit: {out}: no disk space for the logs") and "nothing was recorded" in line
    assert list(out.iterdir()) == []


def _closed_with_losses_counted(out: Path) -> dict:
    """Every log ends with #close; capture_stats.log and recorder.status count the rows lost, per log."""
    for log in out.glob("*.log"):
        assert log.read_text().rstrip("\n").splitlines()[-1].startswith("#close"), log.name
    (stats,) = list(read_log(out / "capture_stats.log")[1])
    status = json.loads((out / "recorder.status").read_text())
    assert status["recording"] == "incomplete"
    assert status["rows_lost"] == sum(status["rows_lost_by_log"].values()) == stats["rows_lost"] > 0
    assert all("No space left on device" in why for why in status["failures"])
    return status


def test_a_job_filling_the_disk_leaves_closed_logs_stats_and_status(lab, tmp_path):
    """The job fills the disk under --out while it runs, then goes on making DNS queries: the
    recording fails loudly (125 around the job, whose own 0 is in recorder.status), and still
    every log ends with #close and capture_stats.log and recorder.status say what was lost."""
    with small_tmpfs(tmp_path, "256k") as disk:
        out = disk / "out"
        queries = f"dig +short @{V4[1]} " + " ".join([DNS_NAME] * 60) + " >/dev/null"   # > a page of rows
        job = f"dig +short @{V4[1]} {DNS_NAME} >/dev/null; head -c 1G /dev/zero > {out}/fill; {queries}; exit 0"
        r = lab.record(out, ["sh", "-c", job])
        assert "Traceback" not in r.stderr, r.stderr
        assert r.returncode == 125, (r.returncode, r.stderr)
        assert "cicd-audit: error: the recording is incomplete" in r.stderr
        (out / "fill").unlink()                  # room to read the logs back (read_log needs none, but tidy)
        status = _closed_with_losses_counted(out)
        assert status["command_status"] == 0
        assert "dns.log" in status["rows_lost_by_log"]


# -- live: the job writes into --out while it runs -------------------------------------

def test_the_job_replacing_a_log_with_a_link_changes_nothing_outside(lab, tmp_path, victim):
    out = tmp_path / "out"
    job = (f"dig +short @{V4[1]} {DNS_NAME} >/dev/null; "
           f"rm -f {out}/capture_stats.log {out}/conn.log; "
           f"ln -s {victim} {out}/capture_stats.log; ln -s {victim} {out}/conn.log; exit 3")
    r = lab.record(out, ["sh", "-c", job])
    assert r.returncode == 3, r.stderr              # the job's own status, passed through
    assert victim.read_text() == "precious\n"
    assert json.loads((out / "recorder.status").read_text())["command_status"] == 3


def test_background_start_is_idempotent_and_never_touches_the_first_recorder(lab, tmp_path):
    out = tmp_path / "out"
    assert lab.record(out, None, "--background").returncode == 0
    try:
        pid_before = (out / "recorder.pid").read_text()
        logs_before = {p.name: p.stat().st_ino for p in out.glob("*.log")}
        again = lab.record(out, None, "--background")
        assert again.returncode == 0 and "already recording" in again.stderr, again.stderr
        assert (out / "recorder.pid").read_text() == pid_before
        assert {p.name: p.stat().st_ino for p in out.glob("*.log")} == logs_before
    finally:
        stop = lab.run(lab.client_ns, [CICD_AUDIT, "stop", str(out)])
    assert stop.returncode == 0, stop.stderr
    assert json.loads((out / "recorder.status").read_text())["recording"] == "complete"


def test_background_starts_at_the_same_moment_make_one_recorder(lab, tmp_path):
    """A retry that comes while the first start is still loading (its logs exist, its pid file not
    yet) waits for it and says "already recording", instead of failing on the half-made session."""
    out = tmp_path / "out"
    first = lab.popen(lab.client_ns, lab.record_argv(out, None, "--background"),
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "recorder.stderr").exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        second = lab.record(out, None, "--background")
        _, first_err = first.communicate(timeout=120)
        assert first.returncode == 0, first_err
        assert second.returncode == 0 and "already recording" in second.stderr, second.stderr
        pid = (out / "recorder.pid").read_text().strip()
        assert f"(pid {pid})" in first_err and f"(pid {pid})" in second.stderr
    finally:
        stop = lab.run(lab.client_ns, [CICD_AUDIT, "stop", str(out)])
    assert stop.returncode == 0, stop.stderr
    assert json.loads((out / "recorder.status").read_text())["recording"] == "complete"


def test_stop_never_signals_a_process_named_by_a_planted_pid_file(tmp_path):
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        out = tmp_path / "out"
        out.mkdir()
        (out / "recorder.pid").write_text(f"{bystander.pid}\n")
        r = subprocess.run([CLI, "stop", str(out)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "does not name a running cicd-audit recorder" in one_error_line(r)
        time.sleep(0.2)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def _catches(pid: int, sig: int) -> bool:
    """Whether the process has a handler for sig (its /proc status SigCgt mask)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except OSError:
        pass
    return False


def test_a_signal_at_any_moment_of_start_up_leaves_valid_logs(lab, tmp_path):
    """SIGTERM and SIGINT at spread-out moments of the recorder's start-up (loading the program,
    attaching; it takes about a second), counted from when its stop handler is in place: never a
    traceback or 'Aborted!', no command started, and every log it created ends with #close.
    (Before that handler, the interpreter itself is starting: SIGINT ends it quietly, SIGTERM
    before any file exists.)"""
    seed = time.time_ns()
    spread = random.Random(seed)              # moments chosen anew each run (the seed is in any failure)
    delays = [0.0, 0.05, 0.15, 0.3, 0.5, 0.8, 1.2, 2.0] + [round(spread.uniform(0, 1.5), 3) for _ in range(6)]
    for attempt, delay in enumerate(delays):
        out = tmp_path / f"out{attempt}"
        marker = tmp_path / f"command-ran{attempt}"
        sig = signal.SIGTERM if attempt % 2 else signal.SIGINT
        proc = lab.popen(lab.client_ns, lab.record_argv(out, ["touch", str(marker)]),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not _catches(proc.pid, signal.SIGTERM) and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err and "Aborted!" not in err, (seed, delay, err)
        if marker.exists():                  # the signal came after start-up: the command ran
            # ... and ended: the status is its own, or 128+N when the signal came while the
            # recorder was finishing; never a death by signal (negative) once the logs are closed.
            assert proc.returncode in (0, 128 + sig), (seed, delay, proc.returncode, err)
        else:
            assert proc.returncode == 128 + sig, (seed, delay, proc.returncode, err)
        for log in out.glob("*.log"):
            assert log.read_text().rstrip("\n").splitlines()[-1].startswith("#close"), (seed, delay, log.name)
        assert not (out / "recorder.pid").exists()
        assert json.loads((out / "recorder.status").read_text())["recording"] == "complete", (seed, delay, err)


def test_a_signal_during_a_replay_leaves_complete_logs(tmp_path):
    """SIGTERM or SIGINT while `record --pcap` reads: what was read is in complete logs, the
    replay says where it stopped, and the exit status is 128 + the signal."""
    from frames import ether
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, UDP
    query = bytes(ether() / IP(src="192.0.2.1", dst="192.0.2.53") / UDP(sport=33333, dport=53)
                  / DNS(id=1, rd=1, qd=DNSQR(qname="a.example")))
    pcap = tmp_path / "long.pcap"
    with open(pcap, "wb") as f:                 # long enough to take several seconds to replay
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(300_000):         # about 10 s of replay here: the signal lands well inside it
            f.write(struct.pack("<IIII", 1_700_000_000 + i // 1000, i % 1000 * 1000, len(query), len(query)) + query)
    for sig in (signal.SIGTERM, signal.SIGINT):
        out = tmp_path / f"out-{sig}"
        proc = subprocess.Popen([CLI, "record", "--pcap", str(pcap), "--out", str(out), "--no-progress"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not (out / "conn.log").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)                         # the program is loaded and packets are flowing
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        assert "Traceback" not in err and proc.returncode == 128 + sig, (proc.returncode, err)
        assert f"stopped by signal {int(sig)} before packet record" in err
        for log in out.glob("*.log"):
            assert log.read_text().rstrip("\n").splitlines()[-1].startswith("#close"), log.name
        assert "cicd_audit_pcap_interrupted" in (out / "weird.log").read_text()
        status = json.loads((out / "recorder.status").read_text())
        assert status["recording"] == "incomplete" and "stopped by signal" in status["failures"][0]


def test_events_the_kernel_could_not_hand_over_make_the_recording_incomplete(tmp_path):
    """A ring buffer too small for the final drain, and a connection table too small for the
    capture: both lose rows as surely as a full disk, so recorder.status says incomplete and
    names both, and the exit status is 4 (125 around a command)."""
    from cicd_audit.cli import _recording_status
    from cicd_audit.errors import RECORDER_FAILED, RecordingIncomplete
    from cicd_audit.recorder.drivers import pcap_replay
    from cicd_audit.recorder.kernel.bpf_program import ProgramSettings
    pcap = tmp_path / "dns.pcap"
    _dns_heavy_capture(pcap, 300)           # 300 connections, all still open when the drain ends them
    settings = ProgramSettings(pcap_mode=True, max_conns=200, ringbuf_bytes=4096)
    out = tmp_path / "out"
    stats = pcap_replay.record_pcap(pcap, out, validate_checksums=False, progress=False, settings=settings)
    assert stats["ringbuf_drops"] > 0 and stats["conn_table_full"] > 0
    status = json.loads((out / "recorder.status").read_text())
    assert status["recording"] == "incomplete"
    assert any("ring buffer was full" in why for why in status["failures"])
    assert any("connection table was full" in why for why in status["failures"])
    assert _recording_status(stats, None) == RecordingIncomplete.exit_code
    assert _recording_status(stats, 0) == RECORDER_FAILED


def test_an_interface_the_job_deletes_is_a_loud_recorder_failure(lab, tmp_path):
    """The job deletes the interface being recorded: its programs stop running, so the recording
    is incomplete: an error line, a weird, recorder.status, and 125 around the job's own 0."""
    for argv in (["ip", "link", "add", "cadummy0", "type", "veth", "peer", "name", "cadummy1"],
                 ["ip", "link", "set", "cadummy0", "up"], ["ip", "link", "set", "cadummy1", "up"]):
        assert lab.run(lab.client_ns, argv).returncode == 0, argv
    out = tmp_path / "out"
    r = lab.record(out, ["sh", "-c", "ip link del cadummy0"], iface="cadummy0")
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 125, (r.returncode, r.stderr)
    assert ("cicd-audit: error: cadummy0: the ingress and egress programs were detached (the interface is gone); "
            "its packets are no longer recorded" in r.stderr.splitlines()), r.stderr
    status = json.loads((out / "recorder.status").read_text())
    assert status["recording"] == "incomplete" and status["command_status"] == 0
    assert any(why.startswith("cadummy0: the ingress and egress programs were") for why in status["failures"])
    assert "cicd_audit_program_detached" in (out / "weird.log").read_text()
    for log in out.glob("*.log"):
        assert log.read_text().rstrip("\n").splitlines()[-1].startswith("#close"), log.name
