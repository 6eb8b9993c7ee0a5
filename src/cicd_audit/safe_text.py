"""Neutralize strings that came from a log for the output they reach.

Query names, process names and paths in a log are chosen by whoever sent the
traffic, so a report must never let them act as markup:

``for_terminal(s)``
    Control characters (C0, DEL, C1: ESC, BEL, CR, ...) and the Unicode
    formatting characters that reorder or hide text (bidi embeddings and
    overrides U+202A-U+202E, isolates U+2066-U+2069, marks U+200E/U+200F,
    U+061C; zero-width U+200B-U+200D, U+2060, U+FEFF; line/paragraph
    separators U+2028/U+2029) become visible escapes ``\\x1b``, ``\\u202e``.
    A backslash is doubled so an escape cannot be forged.
``for_markdown(s)``
    The terminal escaping, then every character GitHub-flavoured Markdown
    gives meaning to is backslash-escaped or turned into an entity, and
    ``://``, ``www.`` and ``@`` are defanged (``[:]//``, ``www[.]``, ``[@]``)
    so GitHub's autolinking cannot make a live link.
    No HTML tag, link, image, code span or table cell boundary survives. Use
    the result as plain cell text (not inside backticks).
``for_markdown_code(s)``
    The same text inside a code span whose backtick fence is longer than any
    run of backticks in ``s``: it cannot close early.

``for_html(s)``
    The terminal escaping (so control and bidi characters show as visible
    escapes instead of reordering the page), then ``html.escape`` with
    ``quote=True``: no tag, entity or attribute boundary survives, in text or
    in a quoted attribute value. Never put the result in a URL, a ``<script>``
    or a ``<style>``: the HTML report has no place where log text goes there.

JSON output needs none of this: ``json.dumps`` escapes control characters,
and consumers treat strings as data.
"""

from __future__ import annotations

import html
import re

#: Unicode format characters that change how surrounding text is displayed
#: (Unicode TR #9 bidi controls, zero-width characters, separators): the
#: "Trojan Source" set (CVE-2021-42574) plus the invisible joiners.
_FORMAT_CHARS = "\u061c\u200b\u200c\u200d\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2060\u2066\u2067\u2068\u2069\ufeff"

_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f-\x9f" + _FORMAT_CHARS + "]")


def _escape(m: re.Match) -> str:
    c = m.group(0)
    if c == "\\":
        return "\\\\"
    o = ord(c)
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"


def for_terminal(s) -> str:
    """``s`` with every control and display-reordering character shown as an escape."""
    return _UNSAFE.sub(_escape, "" if s is None else str(s))


# Characters with a meaning in GitHub-flavoured Markdown (CommonMark's ASCII
# punctuation that may start or end syntax), escaped with a backslash.
_MD_PUNCT = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")
# HTML must not start: '<' and '&' become entities (escaping with '\' is not
# enough inside table cells on every renderer).
_MD_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}


def for_markdown(s) -> str:
    """``s`` as inert Markdown text: no links, images, HTML, emphasis or cell breaks."""
    t = for_terminal(s).replace("\n", " ")
    # GitHub autolinks bare URLs, www. names and e-mail addresses (GFM's
    # autolink extension) whatever their escaping; defang them the way threat
    # reports do, so they read the same and cannot be clicked.
    t = re.sub(r"(?i)(www)\.", r"\1[.]", t.replace("://", "[:]//").replace("@", "[@]"))
    t = "".join(_MD_ENTITIES.get(c, c) for c in t)
    return _MD_PUNCT.sub(r"\\\1", t)


def for_markdown_code(s) -> str:
    """``s`` inside a code span that its own backticks cannot close."""
    t = for_terminal(s).replace("|", "\\|").replace("\n", " ")
    runs = [len(r) for r in re.findall(r"`+", t)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if t.startswith("`") or t.endswith("`") or not t else ""
    return f"{fence}{pad}{t}{pad}{fence}"


def for_html(s) -> str:
    """``s`` as inert HTML text or quoted attribute value: controls and bidi made visible, markup escaped."""
    return html.escape(for_terminal(s), quote=True)
