"""From kernel events to Zeek rows: events, the session and its conn.log, dns.log,
weird and tunnel rows, fragments, processes, and the directory the logs go to.

Imports only `kernel` (the ABI and BPF_PROG_TEST_RUN).
"""
