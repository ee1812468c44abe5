"""The optional C accelerator (``spread/_speedups.c``), or None where spread runs without it.

None when the extension was not built (no C compiler at install time) or when the
environment variable ``SPREAD_NO_SPEEDUPS`` is set to anything but an empty string. Both
code paths give the same results and the same errors; the tests run both.
"""

from __future__ import annotations

import os
from types import ModuleType


def _load() -> ModuleType | None:
    if os.environ.get("SPREAD_NO_SPEEDUPS"):
        return None
    try:
        from spread import _speedups
    except ImportError:
        return None
    return _speedups


speedups = _load()
