"""What is known about one PoP, and its string form in aggregate metadata.

Nova host aggregate metadata is a flat string-to-string map (keys and values
at most 255 characters), so each field of a descriptor has its own key;
``to_metadata`` and ``from_metadata`` are exact inverses for well-formed
values and name the key, the value and the expected form otherwise.

The RTTs the PoP's agent measured to client prefixes take one key per
prefix, ``discovery_client_rtt:<CIDR>`` with the ``/`` written ``_``
(nova allows letters, digits and ``-_:. `` in keys): a PoP probes a few
dozen prefixes, more than one 255-character value holds, and
``openstack aggregate show`` then lists them one per line.
"""

from collections.abc import Mapping
import dataclasses
import ipaddress
import math
import re

from discovery_nova.overlay.coordinates import Coordinate

#: Metadata keys of a PoP aggregate; ``openstack aggregate show`` shows them.
KEY_POP = 'discovery_pop'
KEY_COORD = 'discovery_coord'
KEY_ERROR = 'discovery_error'
KEY_TAGS = 'discovery_tags'
KEY_RENEWABLE = 'discovery_renewable_share'
KEY_PUE = 'discovery_pue'
KEY_IMAGES = 'discovery_images'
KEY_FREE_RAM = 'discovery_free_ram_mb'
KEY_FREE_VCPUS = 'discovery_free_vcpus'
KEY_RTT = 'discovery_rtt'
#: Prefix of the keys of client RTTs: ``discovery_client_rtt:192.0.2.0_24``.
KEY_CLIENT_RTT = 'discovery_client_rtt:'

METADATA_KEYS = (KEY_POP, KEY_COORD, KEY_ERROR, KEY_TAGS, KEY_RENEWABLE,
                 KEY_PUE, KEY_IMAGES, KEY_FREE_RAM, KEY_FREE_VCPUS, KEY_RTT)

POP_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$')
TAG_RE = re.compile(r'^[A-Za-z0-9_.:-]{1,64}$')

#: Error estimate assumed when a PoP publishes none: total ignorance, the
#: value a fresh Vivaldi node starts from.
UNKNOWN_ERROR = 1.0


class PopMetadataError(ValueError):
    """A metadata value of a PoP aggregate cannot be used."""

    def __init__(self, key: str, value: object, expected: str):
        self.key = key
        self.value = value
        self.expected = expected
        super().__init__('aggregate metadata %s=%r: expected %s'
                         % (key, value, expected))


@dataclasses.dataclass(frozen=True, slots=True)
class PopDescriptor:
    """One PoP as the scheduler and the conductor see it."""

    name: str
    coordinate: Coordinate | None = None
    #: Vivaldi relative error estimate of the coordinate (0 = exact).
    error: float = UNKNOWN_ERROR
    tags: frozenset[str] = frozenset()
    #: Share of the PoP's power that is renewable, 0..1, None if unknown.
    renewable_share: float | None = None
    #: Power usage effectiveness (facility / IT energy), >= 1, or None.
    pue: float | None = None
    #: Image ids the PoP's image cache holds.
    images: frozenset[str] = frozenset()
    free_ram_mb: int | None = None
    free_vcpus: int | None = None
    #: RTTs in ms the PoP's agent measured to its nearest PoPs, by name.
    #: Coordinates are least accurate exactly there (a few ms, where an
    #: absolute error of 1-2 ms is a large relative one), and the agent
    #: probes those peers anyway.
    measured_rtt: dict[str, float] = dataclasses.field(
        default_factory=dict, hash=False)
    #: RTTs in ms the PoP's agent measured to a probe address of client
    #: prefixes (``[discovery_overlay] client_probes``), by the prefix in
    #: its canonical CIDR form: where a ``near_ip`` client sits, which the
    #: prefix table alone cannot tell.
    client_rtt: dict[str, float] = dataclasses.field(
        default_factory=dict, hash=False)

    def has_tag(self, tag: str) -> bool:
        """True when ``tag`` is one of the tags, or ``key`` of a key:value.

        ``pop_tag=country:FR`` matches the tag ``country:FR`` only, while
        ``pop_tag=renewable`` also matches ``renewable:yes``.
        """
        if tag in self.tags:
            return True
        if ':' in tag:
            return False
        return any(t.split(':', 1)[0] == tag for t in self.tags)

    def to_metadata(self) -> dict[str, str]:
        """The aggregate metadata that describes this PoP."""
        meta = {KEY_POP: self.name, KEY_ERROR: _num(self.error)}
        if self.coordinate is not None:
            meta[KEY_COORD] = format_coordinate(self.coordinate)
        if self.tags:
            meta[KEY_TAGS] = ','.join(sorted(self.tags))
        if self.renewable_share is not None:
            meta[KEY_RENEWABLE] = _num(self.renewable_share)
        if self.pue is not None:
            meta[KEY_PUE] = _num(self.pue)
        if self.images:
            meta[KEY_IMAGES] = ','.join(sorted(self.images))
        if self.free_ram_mb is not None:
            meta[KEY_FREE_RAM] = str(self.free_ram_mb)
        if self.free_vcpus is not None:
            meta[KEY_FREE_VCPUS] = str(self.free_vcpus)
        if self.measured_rtt:
            meta[KEY_RTT] = ','.join(
                '%s:%s' % (name, _num(rtt))
                for name, rtt in sorted(self.measured_rtt.items()))
        for prefix, rtt in self.client_rtt.items():
            meta[client_rtt_key(prefix)] = _num(rtt)
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> 'PopDescriptor':
        """Parse aggregate metadata; raise PopMetadataError on bad values."""
        name = meta.get(KEY_POP)
        if name is None or not POP_NAME_RE.match(name):
            raise PopMetadataError(
                KEY_POP, name, 'a PoP name of letters, digits, "-", "_" '
                'and ".", at most 63 characters')
        coord = meta.get(KEY_COORD)
        return cls(
            name=name,
            coordinate=(None if coord is None
                        else parse_coordinate(coord, KEY_COORD)),
            error=_float(meta, KEY_ERROR, 0.0, None, UNKNOWN_ERROR),
            tags=_tags(meta.get(KEY_TAGS)),
            renewable_share=_float(meta, KEY_RENEWABLE, 0.0, 1.0, None),
            pue=_float(meta, KEY_PUE, 1.0, None, None),
            images=frozenset(
                i.strip() for i in meta.get(KEY_IMAGES, '').split(',')
                if i.strip()),
            free_ram_mb=_int(meta, KEY_FREE_RAM),
            free_vcpus=_int(meta, KEY_FREE_VCPUS),
            measured_rtt=_measured(meta.get(KEY_RTT)),
            client_rtt=_client_rtts(meta),
        )


def is_metadata_key(key: str) -> bool:
    """Whether ``key`` is one of ours (``AggregateSync`` removes those the
    descriptor no longer has)."""
    return key in METADATA_KEYS or key.startswith(KEY_CLIENT_RTT)


def client_rtt_key(prefix: str) -> str:
    """``discovery_client_rtt:192.0.2.0_24`` for ``192.0.2.0/24``."""
    return KEY_CLIENT_RTT + prefix.replace('/', '_')


def _num(value: float) -> str:
    return repr(float(value))


def format_coordinate(coord: Coordinate) -> str:
    """``x1,x2,...,xn;height``, e.g. ``12.5,-3.25,0.0;1.5``."""
    return '%s;%s' % (','.join(_num(x) for x in coord.vec),
                      _num(coord.height))


def parse_coordinate(text: str, key: str = KEY_COORD) -> Coordinate:
    expected = ('a coordinate "x1,...,xn;height" of finite numbers with a '
                'height >= 0')
    try:
        vec_text, height_text = text.split(';')
        vec = tuple(float(x) for x in vec_text.split(','))
        height = float(height_text)
    except (ValueError, AttributeError):
        raise PopMetadataError(key, text, expected) from None
    if (not all(math.isfinite(x) for x in vec + (height,)) or
            height < 0):
        raise PopMetadataError(key, text, expected)
    return Coordinate(vec, height)


def _float(meta: Mapping[str, str], key: str, low: float,
           high: float | None, default: float | None) -> float | None:
    text = meta.get(key)
    if text is None:
        return default
    expected = ('a number >= %g' % low if high is None
                else 'a number from %g to %g' % (low, high))
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise PopMetadataError(key, text, expected) from None
    if not math.isfinite(value) or value < low or (
            high is not None and value > high):
        raise PopMetadataError(key, text, expected)
    return value


def _int(meta: Mapping[str, str], key: str) -> int | None:
    text = meta.get(key)
    if text is None:
        return None
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise PopMetadataError(key, text, 'an integer >= 0') from None
    if value < 0:
        raise PopMetadataError(key, text, 'an integer >= 0')
    return value


def _tags(text: str | None) -> frozenset[str]:
    if not text:
        return frozenset()
    tags = frozenset(t.strip() for t in text.split(',') if t.strip())
    for tag in tags:
        if not TAG_RE.match(tag):
            raise PopMetadataError(
                KEY_TAGS, text, 'comma-separated tags of letters, digits, '
                '"_", ".", ":" and "-"')
    return tags


def _measured(text: str | None) -> dict[str, float]:
    if not text:
        return {}
    expected = ('comma-separated PoP:milliseconds pairs, e.g. '
                '"fra1:4.2,ams1:7.9"')
    measured = {}
    for item in text.split(','):
        name, sep, value = item.strip().rpartition(':')
        try:
            rtt = float(value)
        except ValueError:
            raise PopMetadataError(KEY_RTT, text, expected) from None
        if (not sep or not POP_NAME_RE.match(name) or
                not math.isfinite(rtt) or rtt < 0):
            raise PopMetadataError(KEY_RTT, text, expected)
        measured[name] = rtt
    return measured


def _client_rtts(meta: Mapping[str, str]) -> dict[str, float]:
    expected = ('a key discovery_client_rtt:<network>_<prefix length> of a '
                'network in canonical form (e.g. '
                'discovery_client_rtt:192.0.2.0_24) with a number of '
                'milliseconds >= 0')
    measured = {}
    for key, text in meta.items():
        if not key.startswith(KEY_CLIENT_RTT):
            continue
        address, sep, length = key[len(KEY_CLIENT_RTT):].rpartition('_')
        try:
            network = ipaddress.ip_network('%s/%s' % (address, length))
            rtt = float(text)
        except (TypeError, ValueError):
            raise PopMetadataError(key, text, expected) from None
        prefix = str(network)
        if (not sep or client_rtt_key(prefix) != key or
                not math.isfinite(rtt) or rtt < 0):
            raise PopMetadataError(key, text, expected)
        measured[prefix] = rtt
    return measured
