"""Reports never let a string from a log act on the reader's terminal or Markdown renderer."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from cicd_audit.analyzers import analyze, load_logs
from cicd_audit.analyzers.cli import analyze as analyze_cmd
from cicd_audit.analyzers.report import render_json, render_markdown, render_text
from cicd_audit.safe_text import for_markdown, for_markdown_code, for_terminal

# What an attacker would put in a query name: an OSC 8 terminal hyperlink, a
# window-title change, a carriage return that overwrites the line with a fake
# verdict, a right-to-left override, and Markdown links, images and HTML.
HOSTILE_LABELS = [
    "\x1b]8;;https://evil.test/\x07clickme\x1b]8;;\x07",
    "\x1b]0;owned\x07title",
    "x\rLOW       nothing to see",
    "abc\u202egnp.exe",
    "\u2066iso\u2069late\u200b",
    "[docs](https://evil.test/x)",
    "![img](https://evil.test/p.png)",
    "<img src=https://evil.test/q>",
    "`code` ``break``` out",
    "www.evil.test mail@evil.test",
]

TERMINAL_FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060\u2066-\u2069\ufeff]")


@pytest.mark.parametrize("s", HOSTILE_LABELS)
def test_terminal_escapes_are_visible(s):
    out = for_terminal(s)
    assert not TERMINAL_FORBIDDEN.search(out)
    assert "\n" not in out
    # visible and reversible enough to investigate: ESC shows as \x1b, RLO as \u202e
    if "\x1b" in s:
        assert "\\x1b" in out
    if "\u202e" in s:
        assert "\\u202e" in out


def test_terminal_backslash_cannot_forge_an_escape():
    assert for_terminal("\\x1b") == "\\\\x1b"
    assert for_terminal("\x1b") != for_terminal("\\x1b")


@pytest.mark.parametrize("s", HOSTILE_LABELS)
def test_markdown_text_is_inert(s):
    out = for_markdown(s)
    assert not TERMINAL_FORBIDDEN.search(out)
    assert "<" not in out and ">" not in out.replace("&gt;", "")
    assert "](" not in out and "![" not in out
    assert "://" not in out and "www." not in out.lower() and "@" not in out.replace("[@]", "").replace("\\[@\\]", "")
    assert not re.search(r"(?<!\\)[`|*_\[\]]", out)


@pytest.mark.parametrize("s", HOSTILE_LABELS)
def test_markdown_code_span_cannot_be_closed_early(s):
    out = for_markdown_code(s)
    fence = re.match(r"`+", out).group(0)
    inner = out[len(fence) : -len(fence)]
    assert out.endswith(fence)
    assert fence not in inner  # the fence is longer than every backtick run inside
    assert not re.search(r"(?<!\\)\|", inner)


def _hostile_dns(session_builder, tmp_path):
    """A real tunnel (binary labels get flagged) whose names also carry the hostile strings."""
    b = session_builder["SessionBuilder"](seed=3)
    for i in range(40):
        label = HOSTILE_LABELS[i % len(HOSTILE_LABELS)]
        b.lookup(f"{label}{i:04d}qz7xk2m9vb.t.evil-tunnel.test", "TXT", rcode=3)
    return b.write(tmp_path / "hostile\x1b[31m-session")


def test_reports_of_hostile_session(session_builder, tmp_path):
    d = _hostile_dns(session_builder, tmp_path)
    result = analyze(load_logs(d), sessions=[d.name])
    assert len(result.findings), "the hostile tunnel must be flagged for this test to mean anything"
    ev = result.findings["evidence"].iloc[0]
    assert any("\x1b" in x for x in ev["examples"])  # the raw strings did reach the findings

    text = render_text(result)
    assert not TERMINAL_FORBIDDEN.search(text)
    assert "\\x1b" in text

    md = render_markdown(result)
    assert not TERMINAL_FORBIDDEN.search(md)
    assert "<img" not in md and "](http" not in md

    doc = json.loads(render_json(result))  # JSON keeps the exact data, escaped by the encoder
    assert any("\x1b" in x for x in doc["findings"][0]["evidence"]["examples"])
    assert "\x1b" not in render_json(result)


def test_cli_text_has_no_raw_escapes(session_builder, tmp_path):
    d = _hostile_dns(session_builder, tmp_path)
    for fmt in ("text", "markdown"):
        res = CliRunner().invoke(analyze_cmd, [str(d), "--format", fmt])
        assert res.exit_code == 0, res.output
        assert not TERMINAL_FORBIDDEN.search(res.output)
