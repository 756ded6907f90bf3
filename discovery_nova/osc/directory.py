"""PoPs as one region's nova describes them, ranked from that region.

A PoP is a host aggregate whose metadata holds ``discovery_pop`` and the
other keys of ``discovery_nova.locality.pop``; every region's nova holds
one per PoP it knows, its own with its compute hosts and the others with
metadata only. The PoP of the current region is the one named after the
region (PoPs are regions), else the only PoP aggregate that has hosts.

Ranking goes through ``rank_pops`` from a ``Reference.of_pop`` of the
current PoP, as the scheduler and the conductor do, so the command shows
the order in which they would try PoPs.
"""

from collections.abc import Iterable
from collections.abc import Mapping
import dataclasses

from discovery_nova.locality.pop import KEY_POP
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.locality.pop import PopMetadataError
from discovery_nova.locality.ranking import rank_pops
from discovery_nova.locality.rtt import Reference
from discovery_nova.locality.rtt import RttEstimate

#: Resource classes of the free capacity the commands show.
VCPU = 'VCPU'
MEMORY_MB = 'MEMORY_MB'


class NoLocalPop(LookupError):
    """The current region's nova does not say which PoP it is."""


@dataclasses.dataclass(frozen=True)
class PopEntry:
    """A PoP and the aggregate that describes it."""

    descriptor: PopDescriptor
    aggregate: str
    availability_zone: str | None = None
    hosts: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.descriptor.name


@dataclasses.dataclass(frozen=True)
class Capacity:
    """Free vCPUs and RAM of a PoP, and where the figures come from."""

    vcpus: int | None = None
    ram_mb: int | None = None
    #: ``placement``, ``hypervisors``, ``metadata``, or None if unknown.
    source: str | None = None


UNKNOWN_CAPACITY = Capacity()


def read_pops(aggregates: Iterable[Mapping]
              ) -> tuple[dict[str, PopEntry], list[str]]:
    """PoPs by name from compute API aggregates, and what was skipped.

    An aggregate with bad PoP metadata is skipped with a warning that
    names it, as the scheduler ignores it. When two aggregates describe
    one PoP, the one with hosts wins (it is this region's own PoP).
    """
    pops: dict[str, PopEntry] = {}
    warnings = []
    for aggregate in aggregates:
        metadata = aggregate.get('metadata') or {}
        if KEY_POP not in metadata:
            continue
        label = aggregate.get('name') or str(aggregate.get('id', '?'))
        try:
            descriptor = PopDescriptor.from_metadata(metadata)
        except PopMetadataError as exc:
            warnings.append('aggregate %s is not a usable PoP: %s'
                            % (label, exc))
            continue
        entry = PopEntry(descriptor, label,
                         aggregate.get('availability_zone'),
                         tuple(sorted(aggregate.get('hosts') or ())))
        known = pops.get(descriptor.name)
        if known is None or (entry.hosts and not known.hosts):
            pops[descriptor.name] = entry
        if known is not None:
            warnings.append('PoP %s is described by aggregates %s and %s; '
                            'using %s' % (descriptor.name, known.aggregate,
                                          entry.aggregate,
                                          pops[descriptor.name].aggregate))
    return pops, warnings


def local_pop(pops: Mapping[str, PopEntry], region: str) -> PopEntry:
    """The PoP of ``region``; NoLocalPop says why none is."""
    if region in pops:
        return pops[region]
    if not pops:
        raise NoLocalPop(
            'the nova of region %s has no PoP aggregates (host aggregates '
            'with a %s metadata key); expected one per PoP, e.g. '
            '"openstack aggregate create --zone %s --property %s=%s '
            'pop-%s"' % (region, KEY_POP, region, KEY_POP, region, region))
    with_hosts = [e for e in pops.values() if e.hosts]
    if len(with_hosts) == 1:
        return with_hosts[0]
    raise NoLocalPop(
        'cannot tell which PoP region %s is: no PoP is named %s and %d PoP '
        'aggregates have hosts (expected exactly one); PoPs known: %s'
        % (region, region, len(with_hosts), ', '.join(sorted(pops))))


def rank(local: PopEntry, pops: Iterable[PopEntry]
         ) -> list[tuple[PopEntry, RttEstimate]]:
    """PoPs nearest to ``local`` first, with their estimated RTT."""
    by_name = {e.name: e for e in pops}
    ranked = rank_pops(Reference.of_pop(local.descriptor),
                       [e.descriptor for e in by_name.values()])
    return [(by_name[d.name], estimate) for d, estimate in ranked]


def placement_free(providers: Iterable[tuple[Mapping, Mapping]]
                   ) -> Capacity:
    """Free capacity summed over (inventories, usages) of providers.

    Free is what the scheduler may still allocate: ``(total - reserved) *
    allocation_ratio - used``, never below 0.
    """
    free = {VCPU: 0, MEMORY_MB: 0}
    for inventories, usages in providers:
        for rc in free:
            inventory = inventories.get(rc)
            if not inventory:
                continue
            capacity = int((inventory['total'] -
                            inventory.get('reserved', 0)) *
                           inventory.get('allocation_ratio', 1.0))
            free[rc] += max(capacity - int(usages.get(rc, 0)), 0)
    return Capacity(free[VCPU], free[MEMORY_MB], 'placement')


def hypervisor_free(hypervisors: Iterable[Mapping]) -> Capacity:
    """Free capacity from hypervisor usage (no allocation ratios).

    Used when the region has no placement endpoint in the catalog; the
    fields exist up to compute microversion 2.87.
    """
    vcpus = ram = 0
    for hypervisor in hypervisors:
        try:
            vcpus += max(hypervisor['vcpus'] - hypervisor['vcpus_used'], 0)
            ram += max(hypervisor['free_ram_mb'], 0)
        except (KeyError, TypeError):
            return UNKNOWN_CAPACITY
    return Capacity(vcpus, ram, 'hypervisors')


def hypervisors_of(entry: PopEntry,
                   hypervisors: Iterable[Mapping]) -> list[Mapping]:
    """The hypervisors whose compute host is in the PoP's aggregate.

    A PoP aggregate without hosts stands for the whole region.
    """
    hypervisors = list(hypervisors)
    if not entry.hosts:
        return hypervisors
    hosts = set(entry.hosts)
    return [h for h in hypervisors
            if (h.get('service') or {}).get('host') in hosts]


def metadata_free(entry: PopEntry) -> Capacity:
    """Free capacity a remote PoP published in its aggregate, if any."""
    d = entry.descriptor
    if d.free_vcpus is None and d.free_ram_mb is None:
        return UNKNOWN_CAPACITY
    return Capacity(d.free_vcpus, d.free_ram_mb, 'metadata')


def health(services: Iterable[Mapping]) -> str:
    """``up/total up`` of nova-compute services."""
    services = list(services)
    up = sum(1 for s in services if s.get('state') == 'up')
    return '%d/%d up' % (up, len(services))
