"""Range checks shared by the overlay's parameter classes.

``RingParams`` and ``SpiralParams`` are built from options (already bounded
by oslo.config) but also directly by the simulator and tests, so each checks
its own values when built; the wording of those errors is the same for all.
"""

from collections.abc import Iterable
import math
from typing import Any


def check_integers(params: Any,
                   bounds: Iterable[tuple[str, int, int]]) -> None:
    """Each named field of ``params`` is an int (not a bool) in its range.

    :raises ValueError: naming the field, its range and the value.
    """
    for field, low, high in bounds:
        value = getattr(params, field)
        if (not isinstance(value, int) or isinstance(value, bool) or
                not low <= value <= high):
            raise ValueError('%s must be an integer from %d to %d, got %r'
                             % (field, low, high, value))


def check_seconds(params: Any, fields: Iterable[str]) -> None:
    """Each named field of ``params`` is a finite positive number.

    :raises ValueError: naming the field and the value.
    """
    for field in fields:
        value = getattr(params, field)
        if (not isinstance(value, (int, float)) or isinstance(value, bool) or
                not math.isfinite(value) or value <= 0):
            raise ValueError('%s must be a positive number of seconds, got %r'
                             % (field, value))
