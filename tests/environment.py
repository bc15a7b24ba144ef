"""What the tests need from outside the repository, found one way, and how long they may wait.

* Data and services: shared data sets are read beside the repository (``../shared/data``, as CI
  lays it out); services come from Debian's packages (PostgreSQL, Chromium). When one is missing,
  :func:`missing` fails the test where it is required (in CI, or with the ``$CHATBOT_REQUIRE_*``
  variable named) and skips it elsewhere with the reason, which ``pytest -rs`` (the default here)
  prints in the summary.
* Time: every timeout a test waits on goes through :func:`scaled`, which multiplies it by
  ``$CHATBOT_TEST_TIME_SCALE`` (default 1): raise it on a slow or busy machine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
TIME_SCALE = float(os.environ.get("CHATBOT_TEST_TIME_SCALE") or 1)


def scaled(seconds: float) -> float:
    """A timeout of *seconds* on a quiet machine, scaled for this one."""
    return seconds * TIME_SCALE


def missing(what: str, hint: str, required_by: str) -> NoReturn:
    """Fail where *what* is required (CI, or ``$required_by`` set), skip with the reason elsewhere."""
    if os.environ.get(required_by) or os.environ.get("CI"):
        pytest.fail(f"{what} is required here (${required_by} or $CI is set) but missing: {hint}")
    pytest.skip(f"{what} missing: {hint}")


def shared_data(relative: str) -> Path:
    """A file of the shared data sets (``../shared/data/RELATIVE``), or a failure / visible skip without it."""
    path = SHARED_DATA / relative
    if not path.exists():
        missing(f"shared data {path}", "put the shared/ folder beside the repository", "CHATBOT_REQUIRE_SHARED")
    return path
