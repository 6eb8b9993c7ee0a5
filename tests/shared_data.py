"""Where every test finds `../shared` (the Zeek oracle, the DNS-tunnel data).

The project's developers and CI always have `shared/` beside the repository,
so a missing file is a broken checkout, not a reason to skip: `shared()`
fails the test (or its collection) with the path it looked for.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared(*parts: str) -> Path:
    """The path ../shared/<parts...>; fails when it does not exist."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"shared data missing: {path} (../shared must sit beside the repository)", pytrace=False)
    return path
