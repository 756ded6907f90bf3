"""Which point a request wants to be near.

``near=<PoP or host>`` names it, ``near_ip=<address>`` finds it through the
client prefix table, and with neither the request is near the PoP it
entered at. A ``near_ip`` that no prefix covers is not the user's fault
(they cannot know the table), so it falls back to the entry PoP.

A ``near_ip`` reference is the mapped PoP plus the RTTs every PoP published
for the client's prefix (``client_measurements``): the scheduler and the
conductor both resolve it here, from the same PoP descriptors, so they
rank a client's PoPs alike.
"""

from collections.abc import Mapping

from discovery_nova.locality import hints as hints_mod
from discovery_nova.locality.hints import HintError
from discovery_nova.locality.hints import LocalityHints
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.locality.prefixes import Address
from discovery_nova.locality.prefixes import PrefixTable
from discovery_nova.locality.rtt import Reference


def resolve_reference(hints: LocalityHints,
                      pops: Mapping[str, PopDescriptor],
                      host_pops: Mapping[str, str],
                      prefixes: PrefixTable,
                      entry_pop: str | None) -> Reference | None:
    """The reference point of a request, or None when there is none.

    Raises HintError when ``near`` names neither a known PoP nor a host of
    one, or when ``max_rtt_ms`` is given without any reference point.
    """
    reference = None
    if hints.near is not None:
        pop_name = hints.near if hints.near in pops else host_pops.get(
            hints.near)
        if pop_name is None or pop_name not in pops:
            raise HintError(hints_mod.NEAR, hints.near,
                            'a known PoP (%s) or a compute host in a PoP '
                            'aggregate' % hints_mod.listing(pops))
        reference = Reference.of_pop(pops[pop_name],
                                     'near=%s' % hints.near)
    elif hints.near_ip is not None:
        pop_name = prefixes.lookup(hints.near_ip)
        if pop_name is not None and pop_name in pops:
            measured = client_measurements(pops, prefixes, hints.near_ip)
            reference = Reference.of_pop(
                pops[pop_name], 'near_ip=%s (PoP %s%s)' % (
                    hints.near_ip, pop_name,
                    ', RTT measured by %d PoPs' % len(measured)
                    if measured else ''), measured)
    if reference is None and entry_pop is not None and entry_pop in pops:
        reference = Reference.of_pop(pops[entry_pop],
                                     'entry PoP %s' % entry_pop)
    if reference is None and hints.max_rtt_ms is not None:
        raise HintError(hints_mod.MAX_RTT_MS, hints.max_rtt_ms,
                        'a reference point to measure from: near=<PoP or '
                        'host>, a near_ip=<address> in the client prefix '
                        'table, or a PoP aggregate for [discovery] pop_name')
    return reference


def client_measurements(pops: Mapping[str, PopDescriptor],
                        prefixes: PrefixTable,
                        address: Address) -> dict[str, float]:
    """RTT (ms) each PoP of ``pops`` published to the prefix of
    ``address``, by PoP name; empty when no prefix holds it.

    One dict lookup per PoP, for ``near_ip`` requests only: cheaper than
    keeping an index fresh beside the PoP directory.
    """
    found = prefixes.match(address)
    if found is None:
        return {}
    prefix = str(found[0])
    measured = {}
    for pop in pops.values():
        rtt = pop.client_rtt.get(prefix)
        if rtt is not None:
            measured[pop.name] = rtt
    return measured
