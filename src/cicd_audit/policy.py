"""The egress policy file: which destinations a CI job may reach.

One file serves both ``cicd-audit analyze --policy`` (report what broke it)
and blocking mode (enforce it), so this module depends on nothing but the
standard library and PyYAML: no pandas, no bcc.

Format::

    allowed:
      domains: [pypi.org, "*.pythonhosted.org", "*.githubusercontent.com:443"]
      cidrs: [10.0.0.0/8, "fd00::/8", "192.0.2.0/24:53"]

Domain rules
    ``name``        that name exactly (case-insensitive, trailing dot ignored)
    ``*.name``      any name *under* ``name`` at any depth, not ``name`` itself
    ``...:PORT``    the rule only allows connections to that port
    Names may be written in Unicode; they are compared in their IDNA (xn--) form.

CIDR rules
    ``NETWORK/LEN`` (host bits must be zero), or a bare address (= /32, /128),
    optionally followed by ``:PORT`` after the prefix length
    (``10.0.0.0/8:443``, ``fd00::/8:53``; a bare IPv4 address may take
    ``:PORT`` too, a bare IPv6 address may not: write ``::1/128:53``).

A connection is allowed when its address is in an allowed CIDR (port
permitting), or when a DNS answer resolved its address from a name an allowed
domain rule matches (port permitting). A DNS lookup alone is allowed when any
domain rule matches the name, whatever its port.

Errors: ``PolicyError`` (an ``InputError``) names the file, the line and the
offending entry, and says what was expected.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Union

from .errors import InputError

__all__ = ["CidrRule", "DomainRule", "Policy", "PolicyError", "load_policy", "parse_policy"]

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_TOP_KEYS = {"allowed"}
_ALLOWED_KEYS = {"domains", "cidrs"}

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


class PolicyError(InputError):
    """A policy file that cannot be used; the message says where and why."""

    def __init__(self, source: str, line: int | None, message: str):
        self.source = source
        self.line = line
        self.reason = message
        where = source if line is None else f"{source}, line {line}"
        super().__init__(f"policy {where}: {message}")


def _norm_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


@dataclass(frozen=True)
class DomainRule:
    """``pattern`` is the name without ``*.``; ``wildcard`` says whether it had one."""

    pattern: str
    wildcard: bool = False
    port: int | None = None
    text: str = ""

    def matches_name(self, name: str) -> bool:
        n = _norm_name(name)
        if self.wildcard:
            return n.endswith("." + self.pattern)
        return n == self.pattern

    def matches(self, name: str, port: int | None = None) -> bool:
        """True when the rule allows ``name`` (and ``port``, when given)."""
        if port is not None and self.port is not None and int(port) != self.port:
            return False
        return self.matches_name(name)

    def __str__(self) -> str:
        return self.text or (("*." if self.wildcard else "") + self.pattern + (f":{self.port}" if self.port else ""))


@dataclass(frozen=True)
class CidrRule:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    port: int | None = None
    text: str = ""

    def matches(self, address, port: int | None = None) -> bool:
        if port is not None and self.port is not None and int(port) != self.port:
            return False
        try:
            addr = address if isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else _addr(address)
        except ValueError:
            return False
        return addr.version == self.network.version and addr in self.network

    def __str__(self) -> str:
        return self.text or (str(self.network) + (f":{self.port}" if self.port else ""))


def _addr(text: str) -> IPAddress:
    a = ipaddress.ip_address(str(text).strip())
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return a.ipv4_mapped
    return a


@dataclass(frozen=True)
class Policy:
    domains: tuple[DomainRule, ...] = ()
    cidrs: tuple[CidrRule, ...] = ()
    source: str = "<policy>"
    _exact: dict = field(default_factory=dict, compare=False, repr=False)
    _wild: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        for r in self.domains:
            (self._wild if r.wildcard else self._exact).setdefault(r.pattern, []).append(r)

    # -- names
    def domain_rules_for(self, name: str) -> list:
        """Every domain rule matching ``name``, whatever its port (exact rules first)."""
        n = _norm_name(name)
        out = list(self._exact.get(n, ()))
        labels = n.split(".")
        for i in range(1, len(labels)):
            out.extend(self._wild.get(".".join(labels[i:]), ()))
        return out

    def allows_name(self, name: str, port: int | None = None) -> bool:
        """Is ``name`` allowed (on ``port``; any port when ``port`` is None)?"""
        return any(r.port is None or port is None or r.port == int(port) for r in self.domain_rules_for(name))

    def allowed_ports(self, name: str) -> frozenset | None:
        """None when ``name`` is allowed on every port, else the set of allowed ports (empty: not allowed)."""
        ports = set()
        for r in self.domain_rules_for(name):
            if r.port is None:
                return None
            ports.add(r.port)
        return frozenset(ports)

    # -- addresses
    def cidr_rule_for(self, address, port: int | None = None) -> CidrRule | None:
        try:
            addr = _addr(address)
        except ValueError:
            return None
        for r in self.cidrs:
            if r.matches(addr, port):
                return r
        return None

    def allows_address(self, address, port: int | None = None) -> bool:
        return self.cidr_rule_for(address, port) is not None

    def allows_connection(self, address, port: int | None, names: Iterable[str] = ()) -> bool:
        """Allowed by a CIDR, or by a name (that DNS resolved to ``address``) on ``port``."""
        if self.allows_address(address, port):
            return True
        return any(self.allows_name(n, port) for n in names)

    def __len__(self) -> int:
        return len(self.domains) + len(self.cidrs)


# ---------------------------------------------------------------------------
# parsing


def _port(text: str, source, line, entry) -> int:
    if not text.isdigit() or not (1 <= int(text) <= 65535):
        raise PolicyError(source, line, f"{entry!r}: port {text!r} is not a number from 1 to 65535")
    return int(text)


def parse_domain_rule(entry, source="<policy>", line=None) -> DomainRule:
    if not isinstance(entry, str):
        raise PolicyError(source, line, f"domain entries must be strings, got {entry!r}")
    text = entry.strip()
    try:
        ipaddress.ip_address(text)
        raise PolicyError(source, line, f"{entry!r} is an address: put it under 'cidrs', not 'domains'")
    except ValueError:
        pass
    body, port = text, None
    if ":" in text:
        body, _, p = text.rpartition(":")
        port = _port(p, source, line, entry)
    body = body.strip().rstrip(".")
    wildcard = False
    if body.startswith("*."):
        wildcard, body = True, body[2:]
    if "*" in body:
        raise PolicyError(source, line, f"{entry!r}: '*' may only be the whole first label, as in '*.example.com'")
    if not body:
        raise PolicyError(source, line, f"{entry!r}: empty domain name")
    try:
        ascii_name = body.encode("idna").decode("ascii") if not body.isascii() else body
    except UnicodeError:
        raise PolicyError(source, line, f"{entry!r}: not a valid internationalised domain name") from None
    name = ascii_name.lower()
    if len(name) > 253 or not all(_LABEL.match(lab) for lab in name.split(".")):
        raise PolicyError(
            source, line, f"{entry!r}: not a domain name (labels of letters, digits, '-' or '_', 1-63 characters)"
        )
    try:
        ipaddress.ip_address(name)
        raise PolicyError(source, line, f"{entry!r} is an address: put it under 'cidrs', not 'domains'")
    except ValueError:
        pass
    return DomainRule(pattern=name, wildcard=wildcard, port=port, text=text)


def parse_cidr_rule(entry, source="<policy>", line=None) -> CidrRule:
    if not isinstance(entry, str):
        raise PolicyError(source, line, f"cidr entries must be strings, got {entry!r}")
    text = entry.strip()
    net_text, port = text, None
    if "/" in text:
        addr_part, _, rest = text.partition("/")
        if ":" in rest:
            plen, _, p = rest.partition(":")
            port = _port(p, source, line, entry)
            net_text = f"{addr_part}/{plen}"
    elif text.count(":") == 1:  # IPv4 address with a port
        net_text, _, p = text.partition(":")
        port = _port(p, source, line, entry)
    try:
        net = ipaddress.ip_network(net_text, strict=True)
    except ValueError as e:
        hint = ""
        try:
            loose = ipaddress.ip_network(net_text, strict=False)
            hint = f"; did you mean {loose}?"
        except ValueError:
            pass
        raise PolicyError(source, line, f"{entry!r}: not a network ({e}){hint}") from None
    return CidrRule(network=net, port=port, text=text)


def _line(node) -> int | None:
    return node.start_mark.line + 1 if node is not None and getattr(node, "start_mark", None) else None


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse policy YAML text. Raises PolicyError with the line of the problem."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e)
        context = str(getattr(e, "context", "") or "")
        hint = ""
        if "alias" in context or "anchor" in context or "alias" in str(problem):
            hint = " (a name starting with '*' must be quoted: \"*.example.com\")"
        raise PolicyError(source, line, f"not valid YAML: {problem}{hint}") from None
    if root is None:
        raise PolicyError(source, None, "the file is empty; expected a mapping with an 'allowed' key")
    if not isinstance(root, yaml.MappingNode):
        raise PolicyError(source, _line(root), "expected a mapping with an 'allowed' key at the top")
    top = {}
    for k, v in root.value:
        key = k.value if isinstance(k, yaml.ScalarNode) else None
        if key not in _TOP_KEYS:
            raise PolicyError(source, _line(k), f"unknown key {key!r}; expected: {', '.join(sorted(_TOP_KEYS))}")
        if key in top:
            raise PolicyError(source, _line(k), f"key {key!r} appears twice")
        top[key] = v
    if "allowed" not in top:
        raise PolicyError(source, _line(root), "missing the 'allowed' key")
    allowed = top["allowed"]
    lists = {"domains": [], "cidrs": []}
    if isinstance(allowed, yaml.ScalarNode) and allowed.value in ("", "~", "null"):
        pass  # "allowed:" with nothing: deny everything
    elif not isinstance(allowed, yaml.MappingNode):
        raise PolicyError(source, _line(allowed), "'allowed' must be a mapping with 'domains' and/or 'cidrs'")
    else:
        seen = set()
        for k, v in allowed.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            if key not in _ALLOWED_KEYS:
                raise PolicyError(
                    source, _line(k), f"unknown key {key!r} under 'allowed'; expected: {', '.join(sorted(_ALLOWED_KEYS))}"
                )
            if key in seen:
                raise PolicyError(source, _line(k), f"key {key!r} appears twice under 'allowed'")
            seen.add(key)
            if isinstance(v, yaml.ScalarNode) and v.value in ("", "~", "null"):
                continue
            if not isinstance(v, yaml.SequenceNode):
                raise PolicyError(source, _line(v), f"'{key}' must be a list, e.g. {key}: [...]")
            for item in v.value:
                if not isinstance(item, yaml.ScalarNode):
                    raise PolicyError(source, _line(item), f"entries of '{key}' must be strings")
                lists[key].append((item.value, _line(item), item.style))
    domains = []
    for value, line, style in lists["domains"]:
        domains.append(parse_domain_rule(value, source, line))
    cidrs = []
    for value, line, style in lists["cidrs"]:
        cidrs.append(parse_cidr_rule(value, source, line))
    return Policy(domains=tuple(domains), cidrs=tuple(cidrs), source=source)


def load_policy(path) -> Policy:
    """Read and parse a policy file; PolicyError on any problem."""
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise PolicyError(p, None, "no such file") from None
    except UnicodeDecodeError as e:
        raise PolicyError(p, None, f"not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise PolicyError(p, None, f"cannot read it: {e.strerror}") from None
    return parse_policy(text, source=p)
