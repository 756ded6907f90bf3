"""Output columns of the discovery commands, for tables and for machines.

``-f table`` and ``-f value`` show what a person reads (``12.3``, ``-`` for
unknown); ``-f json`` and ``-f yaml`` get numbers, lists and ``null``, so a
script never parses a rounded or decorated string.
"""

import math

from cliff import columns

from discovery_nova.overlay.coordinates import Coordinate

UNKNOWN = '-'


class _Optional(columns.FormattableColumn):
    """A value that may be unknown (None); unknown sorts last."""

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, _Optional):
            return NotImplemented
        return ((self.machine_readable() is None, self.machine_readable()
                 or 0) < (other.machine_readable() is None,
                          other.machine_readable() or 0))


class MillisecondsColumn(_Optional):
    """An RTT in ms; infinite (no coordinate) is unknown."""

    def machine_readable(self) -> float | None:
        if self._value is None or math.isinf(self._value):
            return None
        return round(float(self._value), 3)

    def human_readable(self) -> str:
        value = self.machine_readable()
        return UNKNOWN if value is None else '%.1f' % value


class ErrorColumn(_Optional):
    """A Vivaldi relative error estimate (0 = exact)."""

    def machine_readable(self) -> float | None:
        if self._value is None or math.isinf(self._value):
            return None
        return round(float(self._value), 4)

    def human_readable(self) -> str:
        value = self.machine_readable()
        return UNKNOWN if value is None else '%.2f' % value


class NumberColumn(_Optional):
    """A plain number such as a PUE, or unknown."""

    def machine_readable(self) -> float | None:
        return None if self._value is None else float(self._value)

    def human_readable(self) -> str:
        return UNKNOWN if self._value is None else '%g' % self._value


class CountColumn(_Optional):
    """A whole number such as free vCPUs, or unknown."""

    def machine_readable(self) -> int | None:
        return None if self._value is None else int(self._value)

    def human_readable(self) -> str:
        return UNKNOWN if self._value is None else str(int(self._value))


class CoordinateColumn(columns.FormattableColumn):
    """A Vivaldi coordinate: ``x1, x2, ...; h`` or a vector and height."""

    def machine_readable(self) -> dict | None:
        coord: Coordinate | None = self._value
        if coord is None:
            return None
        return {'vector': list(coord.vec), 'height': coord.height}

    def human_readable(self) -> str:
        coord: Coordinate | None = self._value
        if coord is None:
            return UNKNOWN
        return '%s; h %.1f' % (', '.join('%.1f' % x for x in coord.vec),
                               coord.height)


class TagsColumn(columns.FormattableColumn):
    """A set of tags, sorted."""

    def machine_readable(self) -> list[str]:
        return sorted(self._value or ())

    def human_readable(self) -> str:
        return ', '.join(self.machine_readable()) or UNKNOWN


class MeasuredColumn(columns.FormattableColumn):
    """RTTs (ms) a PoP measured, by PoP name or client prefix."""

    def machine_readable(self) -> dict[str, float]:
        return dict(sorted((self._value or {}).items()))

    def human_readable(self) -> str:
        return ', '.join('%s: %.1f' % item
                         for item in self.machine_readable().items()
                         ) or UNKNOWN


class PathColumn(columns.FormattableColumn):
    """The regions a lookup asked, in order, with each one's answer."""

    def machine_readable(self) -> list[dict[str, str]]:
        return [{'region': region, 'answer': answer}
                for region, answer in self._value]

    def human_readable(self) -> str:
        return '\n'.join('%d. %s: %s' % (i, region, answer)
                         for i, (region, answer)
                         in enumerate(self._value, 1))
