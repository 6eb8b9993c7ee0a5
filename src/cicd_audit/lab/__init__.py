"""One network-namespace lab for `cicd-audit demo`, the tests and the benchmarks.

Traffic stays inside namespaces the lab creates; nothing is attached to the
host's interfaces or cgroups. The modules, one job each:

- addresses.py: the one address plan (client, server, container; spare server addresses);
- naming.py: pid-suffixed names, and which ones belong to a dead run;
- netns.py: namespaces, veth pairs, addresses, resolv.conf; in_netns() enters one;
- cgroups.py: the lab's cgroup v2 directory; in_cgroup() runs a command in it;
- services.py: dnsmasq, http.server, a UDP sink and the agent, and their readiness;
- teardown.py: stopping processes, sweeping what killed runs left;
- lab.py: `Lab`, which puts them together (and `Container`).

    with Lab() as lab:
        lab.start_dnsmasq(); lab.start_http()
        lab.record(out_dir, ["curl", f"http://{DNS_NAME}:{HTTP_PORT}/"])
"""

from cicd_audit.lab.addresses import (
    CONTAINER_V4,
    CONTAINER_V6,
    DNS_DOMAIN,
    DNS_NAME,
    HTTP_PORT,
    OTHER_V4,
    OTHER_V6,
    SUBNET_V4,
    SUBNET_V6,
    UNREACHABLE_MAC,
    UNREACHABLE_V4,
    V4,
    V6,
    server_v4,
)
from cicd_audit.lab.cgroups import in_cgroup
from cicd_audit.lab.lab import CICD_AUDIT, Container, Lab
from cicd_audit.lab.netns import in_netns
from cicd_audit.lab.services import UdpSink, agent_ready

__all__ = [
    "CICD_AUDIT", "CONTAINER_V4", "CONTAINER_V6", "DNS_DOMAIN", "DNS_NAME", "HTTP_PORT", "OTHER_V4", "OTHER_V6",
    "SUBNET_V4", "SUBNET_V6", "UNREACHABLE_MAC", "UNREACHABLE_V4", "V4", "V6", "Container", "Lab", "UdpSink",
    "agent_ready", "in_cgroup", "in_netns", "server_v4",
]
