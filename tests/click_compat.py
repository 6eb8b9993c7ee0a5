"""Tests read CliRunner's results as click 8.2 gives them: result.stderr apart, result.output all the
terminal showed. click 8.1, the last release for Python 3.9, mixes stderr into stdout unless told
not to, and then leaves it out of result.output: made to behave as 8.2, once, here."""

from __future__ import annotations

import functools
import inspect

import click.testing


def keep_stderr_apart() -> None:
    init = click.testing.CliRunner.__init__
    if "mix_stderr" not in inspect.signature(init).parameters or getattr(init, "_stderr_apart", False):
        return

    @functools.wraps(init)
    def __init__(self, *args, mix_stderr: bool = False, **kwargs):
        init(self, *args, mix_stderr=mix_stderr, **kwargs)

    __init__._stderr_apart = True
    click.testing.CliRunner.__init__ = __init__
    click.testing.Result.output = property(
        lambda self: self.stdout + (self.stderr if self.stderr_bytes is not None else ""))
