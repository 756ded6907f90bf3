"""How the overlay names a peer: a unique name plus the address to reach it."""

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class PeerRef:
    """A peer of the overlay.

    ``name`` is the peer's unique member id (the PoP name for a PoP agent);
    every protocol message addresses peers by it. ``address`` is
    ``host:port`` of its agent, or the empty string in simulation, where the
    simulated network delivers by name.
    """

    name: str
    address: str = ''

    def to_wire(self) -> list:
        return [self.name, self.address]

    @classmethod
    def from_wire(cls, value) -> 'PeerRef':
        if (not isinstance(value, (list, tuple)) or len(value) != 2 or
                not all(isinstance(v, str) for v in value) or not value[0]):
            raise ValueError(
                'a peer is [name, "host:port"] with a non-empty name, got %r'
                % (value,))
        return cls(value[0], value[1])
