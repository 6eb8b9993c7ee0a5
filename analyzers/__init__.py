"""Analyzers for recorded sessions: DNS tunnels and unexpected destinations.

Pure functions over pandas DataFrames (as ``load_logs`` returns them); nothing
here imports bcc or needs root. For scripts and notebooks::

    from cicd_audit.analyzers import load_logs, analyze
    logs = load_logs("session/")                 # .conn, .dns DataFrames
    result = analyze(logs)                       # .findings, .summary, .tunnel
    result.tunnel.domains                        # per-domain detector features

For a large dns.log, ``loading.load_for_analysis("session/")`` reads it chunk by
chunk straight into the analyzers' index (``dnsindex.IndexBuilder``), never as a
frame: the command's path, with the same findings.

Modules: ``names`` (per-name features), ``domains`` (registered domains),
``dns_tunnel`` (detector), ``destinations`` (policy, direct-to-IP, baseline),
``analysis`` (runs them all), ``dnsindex`` (what they read of dns.log),
``loading`` (sessions into it, chunk by chunk), ``report`` (text/JSON/Markdown), ``cli``.
"""

from ..zeeklog.reader import LoadedLogs, LogFormatError, load_logs, read_dataframe
from .analysis import AnalysisResult, Baseline, analyze
from .destinations import analyze_destinations, destination_table
from .dns_tunnel import TunnelFeatures, detect_dns_tunnels, tunnel_features
from .domains import registered_domain, registered_domains
from .findings import ANALYZERS, FINDING_COLUMNS, SEVERITIES
from .names import name_features

__all__ = [
    "ANALYZERS",
    "AnalysisResult",
    "Baseline",
    "FINDING_COLUMNS",
    "LoadedLogs",
    "LogFormatError",
    "SEVERITIES",
    "TunnelFeatures",
    "analyze",
    "analyze_destinations",
    "destination_table",
    "detect_dns_tunnels",
    "load_logs",
    "name_features",
    "read_dataframe",
    "registered_domain",
    "registered_domains",
    "tunnel_features",
]
