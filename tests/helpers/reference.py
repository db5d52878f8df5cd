"""Locate the third-party reference files (sample settings, model JSON, PASETO vectors).

They live outside the repository (``../shared/reference`` beside the checkout) and are not
redistributed with runnergw; tests that need them skip when they are absent. The location can
be given with ``RUNNERGW_REFERENCE_DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted.trial.unittest import SkipTest

__all__ = ["reference_dir", "reference_file"]


def reference_dir() -> Path:
    """Return the reference directory, or raise SkipTest when it is not present."""
    configured = os.environ.get("RUNNERGW_REFERENCE_DIR")
    if configured:
        candidate = Path(configured)
    else:
        candidate = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
    if not candidate.is_dir():
        raise SkipTest(f"third-party reference files not present at {candidate}")
    return candidate


def reference_file(*parts: str) -> Path:
    """Return a file under the reference directory, or raise SkipTest."""
    path = reference_dir().joinpath(*parts)
    if not path.exists():
        raise SkipTest(f"reference file {path} not present")
    return path
