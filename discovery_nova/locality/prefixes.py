"""Map a client address to the PoP that serves it: a longest-prefix table.

The table is configuration (``[discovery_scheduler] client_prefixes``), one
``CIDR=PoP`` entry per item, e.g. ``192.0.2.0/24=pl012``; IPv4 and IPv6 mix
freely. A lookup tries each configured prefix length, longest first, in one
dict per length: a handful of lengths means a handful of dict probes.
"""

from collections.abc import Iterable
import ipaddress

from discovery_nova.locality.pop import POP_NAME_RE
from discovery_nova.overlay.cidr_entries import split_cidr_entry

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class PrefixTableError(ValueError):
    """A prefix table entry is malformed; the message says which and why."""


class PrefixTable:
    """Longest-prefix match from client addresses to PoP names."""

    def __init__(self, entries: Iterable[tuple[Network, str]] = ()):
        # {(version, prefixlen): {network address int: (network, pop)}}
        self._by_len: dict[tuple[int, int],
                           dict[int, tuple[Network, str]]] = {}
        for network, pop in entries:
            self.add(network, pop)

    def add(self, network: Network, pop: str) -> None:
        key = (network.version, network.prefixlen)
        self._by_len.setdefault(key, {})[int(network.network_address)] = (
            network, pop)
        self._lengths = sorted(self._by_len, key=lambda k: -k[1])

    @classmethod
    def parse(cls, items: Iterable[str]) -> 'PrefixTable':
        """Build from ``CIDR=PoP`` strings; raise PrefixTableError."""
        table = cls()
        for item in items:
            network, pop = split_cidr_entry(
                item, 'client prefix', 'CIDR=PoP, e.g. 192.0.2.0/24=pop1',
                PrefixTableError)
            if not POP_NAME_RE.match(pop):
                raise PrefixTableError(
                    'client prefix %r: %r is no PoP name (letters, digits, '
                    '"-", "_", ".")' % (item, pop))
            table.add(network, pop)
        return table

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_len.values())

    def pop_of(self, network: Network) -> str | None:
        """PoP of exactly ``network`` (not of a prefix holding it)."""
        entry = self._by_len.get((network.version, network.prefixlen), {}
                                 ).get(int(network.network_address))
        return entry[1] if entry is not None else None

    def match(self, address: Address) -> tuple[Network, str] | None:
        """The longest prefix holding ``address`` and its PoP, or None."""
        value = int(address)
        width = address.max_prefixlen
        for version, length in getattr(self, '_lengths', ()):
            if version != address.version:
                continue
            masked = value >> (width - length) << (width - length)
            entry = self._by_len[(version, length)].get(masked)
            if entry is not None:
                return entry
        return None

    def lookup(self, address: Address) -> str | None:
        """PoP of the longest prefix holding ``address``, or None."""
        entry = self.match(address)
        return entry[1] if entry is not None else None
