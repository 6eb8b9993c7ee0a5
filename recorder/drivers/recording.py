"""One recording's session and program, set up and torn down the same way live and from a capture file.

The session (its log files) exists before the program is loaded, so a
program the kernel refuses still leaves closed logs and a recorder.status
that says why. Whatever ends the recording early (an error, a signal
between steps) aborts the session with the driver's reason and closes the
program, so the logs are complete and nothing stays loaded.

API::

    with Recording(session, settings, likely_server_ports, unfinished="why, if not finished",
                   tunnel_max_depth=N) as recording:     # tunnel_max_depth: optional (Zeek's default, 4)
        recording.program, recording.sweeper        # poll, run packets, sweep timers
        stats = recording.finish(end_ns, source, duration, command_status=None)
        recording.kernel_stats                      # the program's counters read by finish
"""

from __future__ import annotations

from cicd_audit import compiled, notices
from cicd_audit.recorder.drivers.gc_pacing import pace_for_events
from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings
from cicd_audit.recorder.kernel.packet_runner import DatagramRunner
from cicd_audit.recorder.kernel.sweeper import Sweeper
from cicd_audit.recorder.logs.session import SessionLog


class Recording:
    """The program whose events the session writes, and the sweeper that ends its connections."""

    def __init__(self, session: SessionLog, settings: ProgramSettings, likely_server_ports: frozenset | None,
                 unfinished: str, tunnel_max_depth: int | None = None):
        self.session = session
        self.unfinished = unfinished        # weird.log's reason when the recording ends before finish()
        self.kernel_stats: dict = {}
        try:
            self.program = CaptureProgram(settings, session.on_event)
        except BaseException:
            session.abort("the BPF program could not be loaded")
            raise
        try:
            if likely_server_ports is not None:
                self.program.set_likely_server_ports(likely_server_ports)
            if tunnel_max_depth is not None:
                self.program.set_tunnel_max_depth(tunnel_max_depth)
            self.sweeper = Sweeper(self.program, self.program.sweep_fn.fd)
            # IP fragments come back reassembled and run through the program as one datagram.
            session.run_datagram = DatagramRunner.for_program(self.program)
            compiled.announce()
            pace_for_events()
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc_info) -> None:
        if not self.session.closed:
            self.session.abort(self.unfinished)
        self.program.close()

    def finish(self, end_ns: int, source: str, duration: float, command_status: int | None = None) -> dict:
        """End every connection still open at end_ns (as Zeek does at the end of a trace or at
        shutdown), take the last events, and close the session. Returns its stats row."""
        self.sweeper.sweep(end_ns, drain=True)
        self.program.poll()
        untracked = self.program.untracked_conns
        if untracked:
            why = (f"{untracked} connections were left out of the replay's timer sweeps (a recorder bug): they "
                   "stayed in the table until a packet or the end of the capture ended them")
            notices.say(f"cicd-audit: error: {why}")
            self.session.record_failure(why)
        self.kernel_stats = self.program.stats()
        return self.session.close(self.kernel_stats, source, duration, command_status=command_status)
