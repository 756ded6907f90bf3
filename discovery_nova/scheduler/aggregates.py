"""Where a host is: PoP descriptors read from host aggregate metadata.

Each PoP is a host aggregate (and availability zone) whose metadata holds
the keys of ``discovery_nova.locality.pop`` (``discovery_pop``,
``discovery_coord``, ...). A host's PoP comes from the aggregates nova's
HostManager attached to its HostState; the directory of *all* PoPs (needed
for PoPs that have no candidate host in a request, e.g. ``near=`` a full
PoP) is read from the API database and reused for
``[discovery_scheduler] pop_refresh_interval`` seconds.
"""

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import itertools
import threading
import time

from oslo_log import log as logging

from discovery_nova.locality.pop import KEY_POP
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.locality.pop import PopMetadataError

LOG = logging.getLogger(__name__)

#: id(aggregate) -> (aggregate, descriptor or None). HostManager replaces an
#: aggregate object when it changes, so an entry is valid as long as it
#: holds that very object; the size bound keeps replaced ones from piling up.
_BY_AGGREGATE: dict[int, tuple[object, PopDescriptor | None]] = {}
_CACHE_LIMIT = 4096


def describe_aggregate(aggregate) -> PopDescriptor | None:
    """The PoP an aggregate stands for, or None for other aggregates."""
    entry = _BY_AGGREGATE.get(id(aggregate))
    if entry is not None and entry[0] is aggregate:
        return entry[1]
    metadata = getattr(aggregate, 'metadata', None) or {}
    descriptor = None
    if KEY_POP in metadata:
        try:
            descriptor = PopDescriptor.from_metadata(metadata)
        except PopMetadataError as exc:
            LOG.warning("Aggregate %(name)s is ignored as a PoP: %(err)s",
                        {'name': getattr(aggregate, 'name', '?'),
                         'err': exc})
    if len(_BY_AGGREGATE) >= _CACHE_LIMIT:
        _BY_AGGREGATE.clear()
    _BY_AGGREGATE[id(aggregate)] = (aggregate, descriptor)
    return descriptor


def pop_of_aggregates(aggregates: Iterable) -> PopDescriptor | None:
    """The PoP of a host in ``aggregates``: the first PoP aggregate's."""
    for aggregate in aggregates:
        descriptor = describe_aggregate(aggregate)
        if descriptor is not None:
            return descriptor
    return None


class HostPops(Mapping[str, str]):
    """Host name -> PoP name of some hosts, worked out when first read.

    ``pop_names[i]`` is the PoP of the ``i``-th of ``host_names()`` (None:
    in no PoP); a host listed twice takes the last PoP given for it. Most
    requests never ask for a host's PoP (only ``near=<host>`` and the
    servers of affinity hints do), and reading the names of 10,000 hosts
    costs more than anything else our plugins then do with them.
    """

    def __init__(self, host_names: Callable[[], Iterable[str]],
                 pop_names: Sequence[str | None]):
        self._host_names = host_names
        self._pop_names = pop_names
        self._table: dict[str, str] | None = None

    def _read(self) -> dict[str, str]:
        if self._table is None:
            # A PoP name is never empty: filter(None) keeps the PoPs,
            # compress the hosts that have one; no Python code per host.
            self._table = dict(zip(
                itertools.compress(self._host_names(), self._pop_names),
                filter(None, self._pop_names), strict=True))
        return self._table

    def __getitem__(self, host: str) -> str:
        return self._read()[host]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())


@dataclasses.dataclass(frozen=True)
class PopDirectory:
    """Every known PoP by name, and the PoP of every host in one."""

    pops: dict[str, PopDescriptor]
    host_pops: Mapping[str, str]

    @classmethod
    def from_aggregates(cls, aggregates: Iterable) -> 'PopDirectory':
        pops: dict[str, PopDescriptor] = {}
        host_pops: dict[str, str] = {}
        for aggregate in aggregates:
            descriptor = describe_aggregate(aggregate)
            if descriptor is None:
                continue
            pops.setdefault(descriptor.name, descriptor)
            for host in getattr(aggregate, 'hosts', None) or ():
                host_pops.setdefault(host, descriptor.name)
        return cls(pops, host_pops)

    @classmethod
    def from_hosts(cls, host_names: Callable[[], Iterable[str]],
                   pop_names: Sequence[str | None],
                   pops: Iterable[PopDescriptor]) -> 'PopDirectory':
        """Directory of some hosts: ``pop_names[i]`` is the PoP of the
        ``i``-th of ``host_names()`` (None: in no PoP), ``pops`` their
        descriptors; ``host_names`` is called when a host's PoP is first
        asked for (see ``HostPops``).

        The first descriptor of a name wins; a host listed twice takes the
        last PoP given for it.
        """
        by_name: dict[str, PopDescriptor] = {}
        for pop in pops:
            by_name.setdefault(pop.name, pop)
        return cls(by_name, HostPops(host_names, pop_names))


def read_aggregates(context) -> Iterable:
    """Every host aggregate of the API database."""
    # nova objects are imported here so that the locality package and
    # the unit tests of this module run without a database.
    from nova import objects

    # get_by_metadata_key would load only the matching metadata row of
    # each aggregate; PoPs need all of them, and aggregates are few.
    return objects.AggregateList.get_all(context)


class DirectoryCache:
    """The PoP directory, reread from ``source`` after ``ttl`` seconds.

    ``source(context)`` returns aggregates; it is the API database in
    nova-scheduler, and whatever a simulation or benchmark puts there.
    """

    def __init__(self, source: Callable[[object], Iterable] =
                 read_aggregates):
        self.source = source
        self._lock = threading.Lock()
        self._read_at = -float('inf')
        self._directory: PopDirectory | None = None

    def get(self, context, ttl: float) -> PopDirectory:
        now = time.monotonic()
        with self._lock:
            if self._directory is not None and now - self._read_at < ttl:
                return self._directory
        directory = PopDirectory.from_aggregates(self.source(context))
        with self._lock:
            self._directory = directory
            self._read_at = now
        return directory

    def clear(self) -> None:
        with self._lock:
            self._directory = None
            self._read_at = -float('inf')


DIRECTORY = DirectoryCache()
