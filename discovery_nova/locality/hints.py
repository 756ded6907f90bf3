"""Scheduler hints of discovery-nova, read into typed values.

Nova hands hints over as strings, or lists of strings when a hint is given
several times (``--hint pop=a --hint pop=b``); list-valued hints also accept
commas (``pop=a,b``). Every parse error is a ``HintError`` naming the hint,
the value given and the form expected, which the scheduler turns into the
request's fault.
"""

from collections.abc import Collection
from collections.abc import Mapping
import dataclasses
import ipaddress
import math
import re
import uuid

from discovery_nova.locality.pop import POP_NAME_RE
from discovery_nova.locality.pop import TAG_RE
from discovery_nova.locality.prefixes import Address

NEAR = 'near'
NEAR_IP = 'near_ip'
MAX_RTT_MS = 'max_rtt_ms'
POP = 'pop'
AVOID_POP = 'avoid_pop'
POP_TAG = 'pop_tag'
SAME_POP_AS = 'same_pop_as'
DIFFERENT_POP_FROM = 'different_pop_from'

HINT_NAMES = (NEAR, NEAR_IP, MAX_RTT_MS, POP, AVOID_POP, POP_TAG,
              SAME_POP_AS, DIFFERENT_POP_FROM)

#: Nova host names: RFC 1123 labels, dots allowed.
_HOST_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$')
#: Larger than any terrestrial RTT by far; beyond it a bound is a typo.
MAX_RTT_LIMIT_MS = 60000.0


class HintError(ValueError):
    """A scheduler hint is malformed or names something unknown."""

    def __init__(self, hint: str, value: object, expected: str):
        self.hint = hint
        self.value = value
        self.expected = expected
        super().__init__('scheduler hint %s=%s is invalid: expected %s'
                         % (hint, _show(value), expected))


def _show(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ','.join(str(v) for v in value)
    return str(value)


@dataclasses.dataclass(frozen=True, slots=True)
class LocalityHints:
    """The discovery-nova hints of one request; None/empty = not given."""

    near: str | None = None
    near_ip: Address | None = None
    max_rtt_ms: float | None = None
    pops: frozenset[str] | None = None
    avoid_pops: frozenset[str] = frozenset()
    pop_tags: frozenset[str] = frozenset()
    same_pop_as: tuple[str, ...] = ()
    different_pop_from: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self == NO_HINTS

    def pop_names(self) -> set[str]:
        """Every PoP name the hints mention, to check they exist."""
        return set(self.pops or ()) | set(self.avoid_pops)


NO_HINTS = LocalityHints()


def _items(hint: str, raw: object) -> list[str]:
    values = raw if isinstance(raw, (list, tuple)) else [raw]
    items = []
    for value in values:
        if not isinstance(value, str):
            raise HintError(hint, raw, 'a string')
        items.extend(v.strip() for v in value.split(','))
    if not items or not all(items):
        raise HintError(hint, raw, 'a comma-separated list without empty '
                        'items')
    return items


def _single(hint: str, raw: object) -> str:
    values = raw if isinstance(raw, (list, tuple)) else [raw]
    if len(values) != 1 or not isinstance(values[0], str):
        raise HintError(hint, raw, 'a single value (the hint was given %d '
                        'times)' % len(values))
    return values[0].strip()


def _pop_set(hint: str, raw: object) -> frozenset[str]:
    names = _items(hint, raw)
    for name in names:
        if not POP_NAME_RE.match(name):
            raise HintError(hint, raw, 'PoP names of letters, digits, "-", '
                            '"_" and ".", separated by commas')
    return frozenset(names)


def _servers(hint: str, raw: object) -> tuple[str, ...]:
    ids = _items(hint, raw)
    out = []
    for value in ids:
        try:
            out.append(str(uuid.UUID(value)))
        except ValueError:
            raise HintError(hint, raw, 'server UUIDs separated by commas'
                            ) from None
    return tuple(dict.fromkeys(out))


def parse_hints(raw: Mapping[str, object]) -> LocalityHints:
    """Read our hints out of a request's scheduler hints.

    Hints of other plugins are ignored. Raises HintError for the first
    malformed hint.
    """
    fields: dict[str, object] = {}
    if NEAR in raw:
        near = _single(NEAR, raw[NEAR])
        if not _HOST_RE.match(near):
            raise HintError(NEAR, raw[NEAR], 'the name of a PoP or of a '
                            'compute host')
        fields['near'] = near
    if NEAR_IP in raw:
        text = _single(NEAR_IP, raw[NEAR_IP])
        try:
            fields['near_ip'] = ipaddress.ip_address(text)
        except ValueError:
            raise HintError(NEAR_IP, raw[NEAR_IP], 'an IPv4 or IPv6 address'
                            ) from None
    if NEAR in fields and NEAR_IP in fields:
        raise HintError(NEAR_IP, raw[NEAR_IP], 'at most one of near and '
                        'near_ip, both were given')
    if MAX_RTT_MS in raw:
        text = _single(MAX_RTT_MS, raw[MAX_RTT_MS])
        expected = ('a number of milliseconds > 0 and <= %g'
                    % MAX_RTT_LIMIT_MS)
        try:
            bound = float(text)
        except ValueError:
            raise HintError(MAX_RTT_MS, raw[MAX_RTT_MS], expected) from None
        if not math.isfinite(bound) or not 0 < bound <= MAX_RTT_LIMIT_MS:
            raise HintError(MAX_RTT_MS, raw[MAX_RTT_MS], expected)
        fields['max_rtt_ms'] = bound
    if POP in raw:
        fields['pops'] = _pop_set(POP, raw[POP])
    if AVOID_POP in raw:
        fields['avoid_pops'] = _pop_set(AVOID_POP, raw[AVOID_POP])
    if POP_TAG in raw:
        tags = _items(POP_TAG, raw[POP_TAG])
        for tag in tags:
            if not TAG_RE.match(tag):
                raise HintError(POP_TAG, raw[POP_TAG], 'tags such as '
                                'country:FR, of letters, digits, "_", ".", '
                                '":" and "-"')
        fields['pop_tags'] = frozenset(tags)
    if SAME_POP_AS in raw:
        fields['same_pop_as'] = _servers(SAME_POP_AS, raw[SAME_POP_AS])
    if DIFFERENT_POP_FROM in raw:
        fields['different_pop_from'] = _servers(
            DIFFERENT_POP_FROM, raw[DIFFERENT_POP_FROM])
    hints = LocalityHints(**fields)
    if hints.pops is not None and hints.pops <= hints.avoid_pops:
        raise HintError(AVOID_POP, raw[AVOID_POP], 'to leave at least one '
                        'of the PoPs named by pop=%s'
                        % ','.join(sorted(hints.pops)))
    return hints


def check_known_pops(hints: LocalityHints, known: Collection[str]) -> None:
    """Raise HintError when a hint names a PoP that does not exist."""
    for hint, names in ((POP, hints.pops or ()), (AVOID_POP,
                                                  hints.avoid_pops)):
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise HintError(hint, ','.join(sorted(names)),
                            'names of known PoPs (%s); unknown: %s'
                            % (listing(known), ','.join(unknown)))


def listing(names: Collection[str], limit: int = 8) -> str:
    ordered = sorted(names)
    if not ordered:
        return 'none is configured'
    if len(ordered) > limit:
        return '%s, ... %d in all' % (', '.join(ordered[:limit]),
                                      len(ordered))
    return ', '.join(ordered)
