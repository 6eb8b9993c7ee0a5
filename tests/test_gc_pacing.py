"""A recording paces Python's cycle collector (recorder/drivers/gc_pacing.py): the start-up's objects
frozen once per process, the youngest generation collected seldom, and cycles still collected.

Each check runs in a process of its own: the collector's state is the process's."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from shared_data import shared

from cicd_audit.recorder.drivers import gc_pacing


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_start_up_is_frozen_once_and_cycles_made_later_are_still_collected():
    out = json.loads(_run("""
        import gc, json, weakref
        from cicd_audit.recorder.drivers import gc_pacing
        before = gc.get_freeze_count()
        gc_pacing.pace_for_events()
        first = gc.get_freeze_count()
        kept = [[i] for i in range(1000)]          # alive at the second call: not frozen by it
        gc_pacing.pace_for_events()
        second = gc.get_freeze_count()

        class Node:
            pass
        node = Node()
        node.self = node
        ref = weakref.ref(node)
        del node
        gc.collect()
        print(json.dumps([before, first, second, gc.get_threshold(), ref() is None]))
    """))
    before, first, second, thresholds, cycle_collected = out
    assert first > before and second == first, out
    assert thresholds == [gc_pacing.GEN0_THRESHOLD, gc_pacing.OLDER_THRESHOLD, gc_pacing.OLDER_THRESHOLD]
    assert cycle_collected


def test_a_recording_paces_the_collector_once_its_program_is_loaded(tmp_path):
    pcap = shared("zeek-oracle/udp-dns-keys/trace.pcap")
    out = _run(f"""
        import gc
        from cicd_audit.recorder.drivers.pcap_replay import record_pcap
        assert gc.get_freeze_count() == 0 and gc.get_threshold()[0] != {gc_pacing.GEN0_THRESHOLD}
        record_pcap({str(pcap)!r}, {str(tmp_path / "logs")!r})
        print(gc.get_freeze_count() > 0, gc.get_threshold()[0])
    """)
    assert out == f"True {gc_pacing.GEN0_THRESHOLD}"
    assert (tmp_path / "logs" / "dns.log").is_file()
