"""Which PoPs the tests use: the entry PoP, the far PoP, all of them.

What ``[discovery]`` in tempest.conf leaves unset is read from the PoP
aggregates of the entry PoP's nova and ranked from the entry PoP as its
scheduler and conductor rank them (``discovery_nova.osc.directory``), so
that the "far" PoP is the one they would try last.
"""

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses

from tempest.lib import exceptions as lib_exc

from discovery_nova.osc import directory


@dataclasses.dataclass(frozen=True)
class Pops:
    """The PoPs of one test run."""

    entry: str
    #: None when the entry PoP is the only one: the tests then skip.
    far: str | None
    #: Every PoP the tests may see a server at, the entry PoP included.
    names: tuple[str, ...]


def ranked_from(entry: str, aggregates: Sequence[Mapping]) -> list[str]:
    """PoP names the entry PoP's nova knows, nearest to it first."""
    known, _warnings = directory.read_pops(aggregates)
    try:
        local = directory.local_pop(known, entry)
    except directory.NoLocalPop as exc:
        raise lib_exc.InvalidConfiguration(
            '[discovery] entry_pop %s: %s' % (entry, exc)) from None
    return [pop.name for pop, _rtt in directory.rank(local, known.values())]


def choose(entry: str, names: Sequence[str], far: str | None,
           aggregates: Callable[[], Sequence[Mapping]]) -> Pops:
    """The PoPs to use, from the options and, if needed, the aggregates.

    ``aggregates`` is called only when ``names`` or ``far`` is not given.
    A single PoP is valid (``far`` is None and the tests skip); bad names
    raise InvalidConfiguration with the option, the value and what was
    expected.
    """
    ranked: list[str] = []
    if not names or not far:
        ranked = ranked_from(entry, aggregates())
    names = list(names) or ranked
    if entry not in names:
        raise lib_exc.InvalidConfiguration(
            '[discovery] entry_pop %s is not one of the PoPs (%s); expected '
            'one of them, or add it to [discovery] pops'
            % (entry, ', '.join(names) or 'none'))
    others = [name for name in names if name != entry]
    if far is not None and far not in others:
        raise lib_exc.InvalidConfiguration(
            '[discovery] far_pop %s: expected one of the PoPs other than '
            'the entry PoP %s (%s)'
            % (far, entry, ', '.join(others) or 'there is none'))
    if far is None and others:
        # The farthest of them that the entry PoP knows.
        known = [name for name in ranked if name in others]
        if not known:
            raise lib_exc.InvalidConfiguration(
                'none of the PoPs in [discovery] pops (%s) is known to the '
                'nova of %s; expected some of: %s; or set [discovery] '
                'far_pop' % (', '.join(others), entry, ', '.join(ranked)))
        far = known[-1]
    return Pops(entry=entry, far=far, names=tuple(names))
