"""The policy file: parsing, matching of names/ports/CIDRs, and clear errors (pure tier)."""

import pytest

from cicd_audit.errors import InputError
from cicd_audit.policy import Policy, PolicyError, load_policy, parse_policy

EXAMPLE = """
allowed:
  domains: [pypi.org, "*.pythonhosted.org", "*.githubusercontent.com:443"]
  cidrs: [10.0.0.0/8, "fd00::/8"]
"""


@pytest.fixture
def policy():
    return parse_policy(EXAMPLE, "example.yml")


def test_issue_example_parses(policy):
    assert len(policy.domains) == 3 and len(policy.cidrs) == 2


@pytest.mark.parametrize(
    "name,port,allowed",
    [
        ("pypi.org", None, True),
        ("PyPI.org.", 443, True),  # case and trailing dot do not matter
        ("www.pypi.org", None, False),  # exact rule: not subdomains
        ("files.pythonhosted.org", 443, True),
        ("a.b.pythonhosted.org", 80, True),  # wildcard: any depth
        ("pythonhosted.org", None, False),  # wildcard: not the name itself
        ("evilpythonhosted.org", None, False),
        ("raw.githubusercontent.com", 443, True),
        ("raw.githubusercontent.com", 80, False),  # port-limited rule
        ("raw.githubusercontent.com", None, True),  # lookups: any port
        ("example.com", None, False),
    ],
)
def test_name_matching(policy, name, port, allowed):
    assert policy.allows_name(name, port) is allowed


@pytest.mark.parametrize(
    "addr,port,allowed",
    [("10.1.2.3", 443, True), ("11.0.0.1", 443, False), ("fd00::1", 53, True), ("fe80::1", 53, False),
     ("::ffff:10.0.0.1", 22, True), ("not-an-ip", 1, False)],
)
def test_cidr_matching(policy, addr, port, allowed):
    assert policy.allows_address(addr, port) is allowed


def test_connection_allowed_by_name_or_cidr(policy):
    assert policy.allows_connection("151.101.0.223", 443, ["files.pythonhosted.org"])
    assert not policy.allows_connection("151.101.0.223", 443, ["evil.example"])
    assert policy.allows_connection("10.9.9.9", 5432, [])
    assert not policy.allows_connection("185.199.108.133", 22, ["raw.githubusercontent.com"])


def test_cidr_ports_and_bare_addresses():
    p = parse_policy('allowed:\n  cidrs: ["192.0.2.0/24:53", "198.51.100.7", "203.0.113.9:443", "::1/128:8080"]\n')
    assert p.allows_address("192.0.2.8", 53) and not p.allows_address("192.0.2.8", 80)
    assert p.allows_address("198.51.100.7", 1) and not p.allows_address("198.51.100.8", 1)
    assert p.allows_address("203.0.113.9", 443) and not p.allows_address("203.0.113.9", 80)
    assert p.allows_address("::1", 8080)


def test_allowed_ports(policy):
    assert policy.allowed_ports("x.githubusercontent.com") == frozenset({443})
    assert policy.allowed_ports("pypi.org") is None
    assert policy.allowed_ports("nowhere.example") == frozenset()


def test_unicode_names_compare_as_idna():
    p = parse_policy('allowed:\n  domains: ["*.bücher.example"]\n')
    assert p.allows_name("shop.xn--bcher-kva.example")


def test_empty_allowed_denies_everything():
    p = parse_policy("allowed:\n")
    assert isinstance(p, Policy) and len(p) == 0 and not p.allows_name("pypi.org")


@pytest.mark.parametrize(
    "text,line,words",
    [
        ("allowed:\n  domains: [*.x.org]\n", 2, "must be quoted"),
        ("allow:\n  domains: []\n", 1, "unknown key 'allow'"),
        ("allowed:\n  domain: []\n", 2, "unknown key 'domain' under 'allowed'"),
        ("allowed:\n  domains: pypi.org\n", 2, "must be a list"),
        ("allowed:\n  domains:\n    - ok.org\n    - \"x*.org\"\n", 4, "'*' may only be the whole first label"),
        ("allowed:\n  domains: [\"a..b\"]\n", 2, "not a domain name"),
        ("allowed:\n  domains: [\"pypi.org:99999\"]\n", 2, "port '99999'"),
        ("allowed:\n  domains: [\"10.0.0.1\"]\n", 2, "put it under 'cidrs'"),
        ("allowed:\n  cidrs: [10.0.0.1/8]\n", 2, "did you mean 10.0.0.0/8"),
        ("allowed:\n  cidrs: [\"10.0.0.0/33\"]\n", 2, "not a network"),
        ("allowed:\n  domains:\n    - {a: b}\n", 3, "must be strings"),
        ("- pypi.org\n", 1, "expected a mapping"),
        ("", None, "empty"),
        ("allowed:\n  domains: []\nallowed:\n  cidrs: []\n", 3, "appears twice"),
    ],
)
def test_bad_policies_name_file_line_and_problem(text, line, words):
    with pytest.raises(PolicyError) as ei:
        parse_policy(text, "bad.yml")
    e = ei.value
    assert isinstance(e, InputError)
    assert e.line == line
    assert "bad.yml" in str(e) and words in str(e)
    if line:
        assert f"line {line}" in str(e)


def test_load_policy_errors(tmp_path):
    with pytest.raises(PolicyError, match="no such file"):
        load_policy(tmp_path / "missing.yml")
    p = tmp_path / "bin.yml"
    p.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(p)


def test_fixture_policy_loads(policy_file):
    p = load_policy(policy_file)
    assert p.allows_name("files.pythonhosted.org", 443)


def test_policy_module_is_independent_of_pandas():
    import subprocess
    import sys

    code = "import sys, cicd_audit.policy; sys.exit(1 if 'pandas' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
