"""Registered-domain grouping with the bundled Public Suffix List, offline (pure tier)."""

import socket

import pytest

from cicd_audit.analyzers import domains


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("files.pythonhosted.org", "pythonhosted.org"),
        ("FILES.PythonHosted.org.", "pythonhosted.org"),
        ("a.b.c.d.example.co.uk", "example.co.uk"),
        # private-section suffixes: each tenant is its own group
        ("d31qbv1cthcecs.cloudfront.net", "d31qbv1cthcecs.cloudfront.net"),
        ("mybucket.s3.amazonaws.com", "mybucket.s3.amazonaws.com"),
        ("productionresultssa12.blob.core.windows.net", "productionresultssa12.blob.core.windows.net"),
        ("pipelines.actions.githubusercontent.com", "actions.githubusercontent.com"),
        # fallbacks
        ("vaaaakardli.pirate.sea", "pirate.sea"),  # no public suffix: last two labels
        ("wpad", "wpad"),
        ("ec2-54-210-33-17.compute-1.amazonaws.com", "ec2-54-210-33-17.compute-1.amazonaws.com"),  # is a suffix
        ("", ""),
    ],
)
def test_registered_domain(name, expected):
    assert domains.registered_domain(name) == expected


def test_vectorised_equals_scalar():
    names = [
        "x%d.t1.biillpi.com" % i for i in range(50)
    ] + ["a.b.up.tun.hsc.fr", "tun.hsc.fr", "hsc.fr", "fr", "b.f.0.ip6.arpa", "1.2.3.4.in-addr.arpa",
         "foo.s3.dualstack.us-east-1.amazonaws.com", "abc.evil.github.io", "github.io", "x.y.local", "Q+Z8.HideMyself.org.", None]
    got = domains.registered_domains(names).tolist()
    assert got == [domains.registered_domain(n) if n else "" for n in names]


def test_reverse_names():
    assert domains.is_reverse_name("4.4.8.8.in-addr.arpa")
    assert domains.is_reverse_name("b.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.f.f.ip6.arpa.")
    assert not domains.is_reverse_name("data123.in-addr.arpa")
    assert not domains.is_reverse_name("example.com")


def test_subdomain_part_keeps_case():
    assert domains.subdomain_part("AbC.def.hsc.fr", "hsc.fr") == "AbC.def"
    assert domains.subdomain_part("hsc.fr", "hsc.fr") == ""
