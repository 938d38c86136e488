"""How long to wait after failed attempts: exponential, capped, with jitter so that receivers coming back are
not hit by every sender at once."""

from __future__ import annotations

import random

BASE_S = 1.0


def delay(failures: int, cap_s: float) -> float:
    """Seconds before the next attempt after ``failures`` failures in a row (1, 2, 4, ... up to ``cap_s``)."""
    if failures <= 0:
        return 0.0
    ceiling = min(cap_s, BASE_S * 2 ** min(failures - 1, 30))
    return ceiling * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret
