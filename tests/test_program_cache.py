"""recorder/kernel/program_cache.py and the cached load path of recorder/kernel/bpf_program.py.

Pure: the key covers every source file's bytes (and not the directory's
path), the flags, the kernel, headers and bcc; entries round-trip; damaged,
foreign or unsafe entries are refused with CacheError.

Root (bcc): a program loaded from a warm cache writes the same conn.log and
dns.log as bcc's own loader on the oracle's wikipedia trace; every kind of
broken entry (garbage, cut short, a flipped instruction, one the verifier
refuses) falls back to compiling, works, and is replaced; a warm start never
imports bcc; an unwritable cache only costs time; `cicd-audit prepare` fills
the cache for the three variants.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cicd_audit.recorder.kernel import program_cache
from cicd_audit.recorder.kernel.bpf_program import PREPARED_SETTINGS
from cicd_audit.recorder.kernel.program_cache import CacheError, CompiledProgram, FunctionSpec, MapSpec

REPO = Path(__file__).resolve().parents[1]
# The program's sources; CICD_AUDIT_TEST_BPF_DIR: test the loader on another copy (e.g. the last commit's
# while bpf/ is being edited).
BPF_DIR = Path(os.environ.get("CICD_AUDIT_TEST_BPF_DIR") or REPO / "bpf")
WIKIPEDIA = REPO.parent / "shared" / "zeek-oracle" / "wikipedia" / "trace.pcap"
CLI = str(Path(sys.executable).with_name("cicd-audit"))

# exit: r0 = 0; exit
EXIT_OK = bytes.fromhex("b700000000000000" "9500000000000000")
# r1 = map "m" (BPF_LD_IMM64, src_reg BPF_PSEUDO_MAP_FD, fd 7); r0 = 0; exit
MAP_REF = bytes.fromhex("1811000007000000" "0000000000000000") + EXIT_OK


def key(src=BPF_DIR, cflags=("-DX=1",), kernel="6.1.0", headers="h", bcc="0.26.0") -> str:
    return program_cache.cache_key(Path(src), [f"-I{src}", *cflags], kernel, headers, bcc)


def sample_program() -> CompiledProgram:
    return CompiledProgram(maps=(MapSpec("m", 1, 4, 8, 16),),
                           functions=(FunctionSpec("f", MAP_REF, ((0, "m"),)), FunctionSpec("g", EXIT_OK)),
                           license="GPL", kern_version=0, compiler="test")


# -- the key ---------------------------------------------------------------------

def test_key_changes_with_any_source_file(tmp_path):
    src = tmp_path / "bpf"
    shutil.copytree(BPF_DIR, src, ignore=shutil.ignore_patterns("__pycache__"))
    before = key(src)
    assert key(src) == before
    for name in ("capture.bpf.c", "tcp.h", "cicd_audit.h"):
        path = src / name
        original = path.read_bytes()
        path.write_bytes(original + b"\n/* changed */\n")
        assert key(src) != before, f"a change to {name} must change the key"
        path.write_bytes(original)
        assert key(src) == before
    (src / "LICENSE.extra").write_text("not compiled\n")
    assert key(src) == before, "a file the compiler never reads (and the package does not ship) changes nothing"
    (src / "new.h").write_text("#define NEW 1\n")
    assert key(src) != before, "a new header in bpf/ must change the key"


def test_key_ignores_where_the_sources_are(tmp_path):
    a, b = tmp_path / "a" / "bpf", tmp_path / "b" / "bpf"
    for d in (a, b):
        shutil.copytree(BPF_DIR, d, ignore=shutil.ignore_patterns("__pycache__"))
    assert key(a) == key(b)


@pytest.mark.parametrize("change", [{"cflags": ("-DX=2",)}, {"kernel": "6.8.0"}, {"headers": "other"},
                                    {"bcc": "0.29.1"}], ids=lambda c: next(iter(c)))
def test_key_changes_with_flags_kernel_headers_bcc(change):
    assert key(**change) != key()


def test_key_of_the_installed_settings_covers_the_settings():
    from cicd_audit.recorder.kernel import kernel_headers
    from cicd_audit.recorder.kernel.bpf_program import PREPARED_SETTINGS, program_key
    headers = kernel_headers.HeaderChoice(None, "test")
    keys = {program_key(s, headers) for s in PREPARED_SETTINGS.values()}
    assert len(keys) == len(PREPARED_SETTINGS)


def test_program_key_follows_a_monkeypatched_source_dir(tmp_path, monkeypatch):
    from cicd_audit.recorder.kernel import bpf_program, kernel_headers
    src = tmp_path / "bpf"
    shutil.copytree(BPF_DIR, src, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(bpf_program, "source_dir", lambda: src)
    headers = kernel_headers.HeaderChoice(None, "test")
    settings = bpf_program.ProgramSettings()
    before = bpf_program.program_key(settings, headers)
    (src / "timers.h").write_text((src / "timers.h").read_text() + "\n")
    assert bpf_program.program_key(settings, headers) != before


# -- the store -------------------------------------------------------------------

def test_round_trip(tmp_path):
    program = sample_program()
    path = program_cache.store("k1", program, tmp_path)
    assert path == tmp_path / "k1.json"
    assert program_cache.load("k1", tmp_path) == program
    assert program_cache.load("k2", tmp_path) is None
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "temporary files left behind"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped-instruction", "other-key", "bad-ref"])
def test_damaged_entries_are_refused(tmp_path, damage):
    path = program_cache.store("k", sample_program(), tmp_path)
    raw = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(os.urandom(300))
    elif damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    else:
        doc = json.loads(raw)
        if damage == "flipped-instruction":
            doc["program"]["functions"][0]["insns"] = "AAAA" + doc["program"]["functions"][0]["insns"][4:]
        elif damage == "other-key":
            doc["key"] = "other"
        else:       # consistent digest, but a reference to a map that does not exist
            doc["program"]["functions"][0]["map_refs"] = [[0, "nope"]]
            doc["digest"] = program_cache._digest(doc["program"])
        path.write_text(json.dumps(doc))
    with pytest.raises(CacheError):
        program_cache.load("k", tmp_path)


def test_entries_others_can_write_are_refused(tmp_path):
    path = program_cache.store("k", sample_program(), tmp_path)
    os.chmod(path, 0o666)
    with pytest.raises(CacheError, match="writable by others"):
        program_cache.load("k", tmp_path)


def test_old_entries_are_pruned(tmp_path):
    for i in range(program_cache.KEEP_ENTRIES + 5):
        path = program_cache.store(f"k{i:02d}", sample_program(), tmp_path)
        os.utime(path, (1000 + i, 1000 + i))
    names = sorted(p.stem for p in tmp_path.glob("*.json"))
    assert len(names) == program_cache.KEEP_ENTRIES
    assert f"k{program_cache.KEEP_ENTRIES + 4:02d}" in names and "k00" not in names


# -- loading (root, bcc) ---------------------------------------------------------------

@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An empty cache, and a snapshot of bpf/: every loader in the test compiles the same sources,
    even while someone edits bpf/."""
    from cicd_audit.recorder.kernel import bpf_program
    d = tmp_path / "programs"
    monkeypatch.setattr(program_cache, "cache_dir", lambda: d)
    src = tmp_path / "bpf"
    shutil.copytree(BPF_DIR, src, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(bpf_program, "source_dir", lambda: src)
    return d


class _Recorded:
    """Loader wrapper that remembers each CaptureProgram's load report."""

    reports: list = []

    def __new__(cls, settings, on_event):
        from cicd_audit.recorder.kernel.bpf_program import CaptureProgram
        program = CaptureProgram(settings, on_event)
        cls.reports.append(program.load_report)
        return program


def _record(pcap: Path, out: Path, loader, monkeypatch, **kw) -> dict:
    from cicd_audit.recorder.drivers import pcap_replay, recording
    monkeypatch.setattr(recording, "CaptureProgram", loader)
    return pcap_replay.record_pcap(pcap, out, progress=False, **kw)


def _rows(out: Path, name: str) -> list[dict]:
    """The log's rows without uid, sorted: connections still open at the end are drained in the
    hash map's order, which its random seed changes from one map to the next."""
    from cicd_audit.zeeklog.reader import read_log
    rows = [{k: v for k, v in row.items() if k != "uid"} for row in read_log(out / f"{name}.log")[1]]
    return sorted(rows, key=lambda row: json.dumps(row, sort_keys=True, default=str))


@pytest.mark.root
def test_warm_cache_writes_the_same_logs_as_bcc(tmp_path, cache_dir, monkeypatch):
    from cicd_audit.recorder.kernel.bcc_reference import BccLoadedProgram
    _Recorded.reports = []
    _record(WIKIPEDIA, tmp_path / "bcc", BccLoadedProgram, monkeypatch)
    _record(WIKIPEDIA, tmp_path / "cold", _Recorded, monkeypatch)
    _record(WIKIPEDIA, tmp_path / "warm", _Recorded, monkeypatch)
    assert [r.source for r in _Recorded.reports] == ["compiled", "cache"]
    assert _Recorded.reports[0].cache_path is not None and _Recorded.reports[0].cache_path.parent == cache_dir
    for log in ("conn", "dns"):
        reference = _rows(tmp_path / "bcc", log)
        assert _rows(tmp_path / "warm", log) == reference, f"{log}.log differs from bcc's"
        assert _rows(tmp_path / "cold", log) == reference
    assert len(_rows(tmp_path / "bcc", "conn")) > 5


def _refused_by_the_verifier(path: Path, key: str) -> None:
    """A well-formed entry whose ca_packet reads an uninitialised register."""
    program = program_cache.load(key, path.parent)
    bad = FunctionSpec("ca_packet", bytes.fromhex("bf21000000000000" "9500000000000000"))  # r1 = r2; exit
    functions = tuple(bad if f.name == "ca_packet" else f for f in program.functions)
    program_cache.store(key, CompiledProgram(program.maps, functions, program.license, program.kern_version),
                        path.parent)


DAMAGES = {
    "garbage": lambda path, key: path.write_bytes(b"\x7fELF not json at all"),
    "truncated": lambda path, key: path.write_bytes(path.read_bytes()[:1000]),
    "flipped-instruction": lambda path, key: path.write_text(
        path.read_text().replace('"insns":"', '"insns":"AAAA', 1)),
    "verifier-refuses": _refused_by_the_verifier,
}


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_broken_entry_falls_back_to_compiling(tmp_path, cache_dir, monkeypatch, damage):
    from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings
    settings = ProgramSettings(pcap_mode=True, validate_checksums=True)
    first = CaptureProgram(settings, lambda data, size: None)
    first.close()
    path = first.load_report.cache_path
    DAMAGES[damage](path, first.load_report.key)
    _Recorded.reports = []
    stats = _record(WIKIPEDIA, tmp_path / "out", _Recorded, monkeypatch)
    report = _Recorded.reports[0]
    assert report.source == "compiled" and report.cache_problem, report
    assert stats["connections"] > 5
    again = CaptureProgram(settings, lambda data, size: None)
    again.close()
    assert again.load_report.source == "cache", "the broken entry was not replaced"


@pytest.mark.root
def test_an_unwritable_cache_only_costs_time(tmp_path, monkeypatch):
    from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(program_cache, "cache_dir", lambda: tmp_path / "file" / "programs")
    program = CaptureProgram(ProgramSettings(pcap_mode=True), lambda data, size: None)
    try:
        assert program.load_report.source == "compiled"
        assert program.load_report.cache_path is None and "could not store" in program.load_report.cache_problem
        assert program.stats()["packets"] == 0
    finally:
        program.close()


WARM_START = r"""
import sys
from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings
p = CaptureProgram(ProgramSettings(pcap_mode=True, validate_checksums=False), lambda data, size: None)
print(p.load_report.source, "bcc-imported" if "bcc" in sys.modules else "bcc-not-imported")
p.close()
"""


@pytest.mark.root
def test_a_warm_start_does_not_import_bcc(tmp_path):
    env = dict(os.environ, CICD_AUDIT_CACHE=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", WARM_START], env=env, capture_output=True, text=True, timeout=120)
            for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    assert runs[0].stdout.split() == ["compiled", "bcc-imported"]
    assert runs[1].stdout.split() == ["cache", "bcc-not-imported"]


@pytest.mark.root
@pytest.mark.slow
def test_prepare_fills_the_cache_for_every_variant(tmp_path):
    env = dict(os.environ, CICD_AUDIT_CACHE=str(tmp_path))
    first = subprocess.run([CLI, "prepare"], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("compiled and cached") == len(PREPARED_SETTINGS), first.stderr
    assert len(list((tmp_path / "programs").glob("*.json"))) == len(PREPARED_SETTINGS)
    second = subprocess.run([CLI, "prepare"], env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and second.stderr.count("already cached") == len(PREPARED_SETTINGS), second.stderr
    # It also says whether the per-message path's C parts are in use (install time is when it can be fixed).
    assert second.stderr.endswith("cicd-audit: per-frame and per-message paths: compiled parts in use\n"), second.stderr
    pure = subprocess.run([CLI, "prepare"], env=dict(env, CICD_AUDIT_PURE_PYTHON="1"), capture_output=True, text=True,
                          timeout=300)
    assert "note: parts of the per-frame and per-message paths run in pure Python" in pure.stderr, pure.stderr


def test_the_portable_key_follows_sources_and_flags_only(tmp_path):
    src = tmp_path / "bpf"
    src.mkdir()
    (src / "capture.bpf.c").write_text("int x;\n")
    key = program_cache.portable_key(src, ["-DA=1"])
    assert key == program_cache.portable_key(src, ["-DA=1"])
    assert key != program_cache.portable_key(src, ["-DA=2"])
    assert key not in {program_cache.cache_key(src, ["-DA=1"], k, h, b)
                       for k, h, b in (("6.18.0", "x", "0.26"), ("5.10.0", "y", "0.18"))}
    (src / "capture.bpf.c").write_text("int y;\n")
    assert key != program_cache.portable_key(src, ["-DA=1"])


NO_COMPILER = r"""
import sys
sys.modules["bcc"] = None           # `import bcc` fails: no compiler on this "runner"
from cicd_audit.recorder.kernel import kernel_headers
def no_headers():
    raise SystemExit("kernel headers were looked for")
kernel_headers.choose_headers = no_headers
from cicd_audit.recorder.drivers.pcap_replay import record_pcap
record_pcap(sys.argv[1], sys.argv[2], progress=False)
print("loaded without bcc or headers")
"""


@pytest.mark.root
def test_prebuilt_programs_record_without_bcc_or_kernel_headers(tmp_path):
    """A runner image: bytecode built once (`prepare --prebuilt`), then a recorder that cannot import
    bcc nor find kernel headers writes the same logs as one that compiles."""
    from cicd_audit.recorder.kernel.bpf_program import prepare
    prebuilt = tmp_path / "prebuilt"
    [(_, report)] = prepare({"pcap": PREPARED_SETTINGS["pcap"]}, prebuilt=prebuilt)
    assert report.source == "prebuilt" and report.cache_path.parent == prebuilt
    env = dict(os.environ, CICD_AUDIT_PROGRAMS=str(prebuilt), CICD_AUDIT_CACHE=str(tmp_path / "empty-cache"))
    r = subprocess.run([sys.executable, "-c", NO_COMPILER, str(WIKIPEDIA), str(tmp_path / "prebuilt-run")],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "loaded without bcc or headers" in r.stdout, r.stderr
    normal = subprocess.run([CLI, "record", "--pcap", str(WIKIPEDIA), "--out", str(tmp_path / "normal"),
                             "--no-progress"], capture_output=True, text=True, timeout=300)
    assert normal.returncode == 0, normal.stderr
    for log in ("conn", "dns"):
        assert _rows(tmp_path / "prebuilt-run", log) == _rows(tmp_path / "normal", log)
    # Without the prebuilt program the same "runner" cannot record, and says why.
    env["CICD_AUDIT_PROGRAMS"] = str(tmp_path / "nothing-here")
    r = subprocess.run([sys.executable, "-c", NO_COMPILER, str(WIKIPEDIA), str(tmp_path / "no-prebuilt")],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "kernel headers were looked for" in r.stderr
