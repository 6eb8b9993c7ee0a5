"""Durations and sizes as people write them on a command line: 90s, 30m, 1h; 512K, 100M, 1G.

``Quantity("duration")`` gives seconds (float), ``Quantity("size")`` bytes
(int, binary multiples: 1K = 1024). A bare number is seconds or bytes.
"""

from __future__ import annotations

import re

import click

_UNITS = {
    "duration": {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400},
    "size": {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4},
}
_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_quantity(text: str, kind: str) -> float | int:
    """The value of text in seconds or bytes; ValueError saying what is expected."""
    units = _UNITS[kind]
    m = _QUANTITY.match(text)
    unit = m.group(2).lower() if m else ""
    if kind == "size" and len(unit) > 1:
        unit = unit.removesuffix("b").removesuffix("i")       # 100MB, 100MiB
    if not m or unit not in units:
        raise ValueError(f"{text!r} is not a {kind} (e.g. {'30m, 1h, 90s' if kind == 'duration' else '100M, 1G'})")
    value = float(m.group(1)) * units[unit]
    if value <= 0:
        raise ValueError(f"{text!r}: must be more than 0")
    return value if kind == "duration" else int(value)


class Quantity(click.ParamType):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = kind

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return value
        try:
            return parse_quantity(value, self.kind)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
