"""cicd-audit: a network audit recorder for CI/CD runners.

The recorder captures a job's traffic in the kernel (eBPF, TC) and writes Zeek's
conn.log and dns.log; the analyzers read those logs (ours or real Zeek's) and
report DNS-tunnel exfiltration and unexpected destinations.
"""

__version__ = "0.1.0"
