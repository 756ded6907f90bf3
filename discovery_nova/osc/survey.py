"""What the current region's nova knows about the PoPs, and how each is.

The directory (which PoPs, where, which one is here) comes from the host
aggregates of the current region only: that is the view its scheduler and
conductor act on. Health and free capacity are asked of the PoPs
themselves, each PoP being the keystone region of the same name; remote
regions are asked in parallel so that one slow PoP costs one timeout, not
one per PoP.
"""

from collections.abc import Iterable
import concurrent.futures
import dataclasses

from osc_lib import exceptions
from oslo_log import log as logging

from discovery_nova.locality.rtt import RttEstimate
from discovery_nova.osc import directory as dir_mod
from discovery_nova.osc.client import AdminRequired
from discovery_nova.osc.client import Client
from discovery_nova.osc.client import RegionError

LOG = logging.getLogger(__name__)

#: Regions asked at once for their health.
MAX_PARALLEL = 8

HEALTH_UNKNOWN = 'unknown'
HEALTH_FORBIDDEN = 'unknown (forbidden)'
HEALTH_UNREACHABLE = 'unreachable'


@dataclasses.dataclass(frozen=True)
class Directory:
    """The PoPs one region knows, and which of them it is."""

    region: str
    pops: dict[str, dir_mod.PopEntry]
    local: dir_mod.PopEntry

    def ranked(self) -> list[tuple[dir_mod.PopEntry, RttEstimate]]:
        """Every PoP, this one included, nearest first."""
        return dir_mod.rank(self.local, self.pops.values())

    def find(self, name: str) -> dir_mod.PopEntry:
        """The PoP called ``name``; CommandError naming the known ones."""
        try:
            return self.pops[name]
        except KeyError:
            raise exceptions.CommandError(
                'no PoP %r is known to region %s; expected one of: %s'
                % (name, self.region, ', '.join(sorted(self.pops)))
            ) from None


def read_directory(client: Client, region: str | None = None) -> Directory:
    """The PoP directory of ``region`` (default: the current region)."""
    region = region or client.region_name
    pops, warnings = dir_mod.read_pops(client.aggregates(region))
    for warning in warnings:
        LOG.warning("%s", warning)
    try:
        local = dir_mod.local_pop(pops, region)
    except dir_mod.NoLocalPop as exc:
        raise exceptions.CommandError(str(exc)) from None
    return Directory(region, pops, local)


def local_capacity(client: Client, directory: Directory
                   ) -> dir_mod.Capacity:
    """Free capacity of the current PoP, from placement if the region has
    it, else from the hypervisors' own usage."""
    region = directory.region
    try:
        hypervisors = dir_mod.hypervisors_of(directory.local,
                                             client.hypervisors(region))
    except RegionError as exc:
        LOG.warning("Free capacity of %(pop)s unknown: %(err)s",
                    {'pop': directory.local.name, 'err': exc})
        return dir_mod.UNKNOWN_CAPACITY
    if region not in client.regions('placement'):
        return dir_mod.hypervisor_free(hypervisors)
    try:
        return dir_mod.placement_free(
            client.provider_usage(region, h['id']) for h in hypervisors)
    except RegionError as exc:
        LOG.warning("Free capacity of %(pop)s from hypervisor usage: "
                    "%(err)s", {'pop': directory.local.name, 'err': exc})
        return dir_mod.hypervisor_free(hypervisors)


def capacities(client: Client, directory: Directory,
               entries: Iterable[dir_mod.PopEntry]
               ) -> dict[str, dir_mod.Capacity]:
    """Free capacity of each PoP: live for this one, published for others.
    """
    found = {}
    for entry in entries:
        if entry.name == directory.local.name:
            found[entry.name] = local_capacity(client, directory)
        else:
            found[entry.name] = dir_mod.metadata_free(entry)
    return found


def region_health(client: Client, region: str,
                  catalog: Iterable[str]) -> str:
    """``up/total up`` of the region's computes, or why it is unknown."""
    if region not in catalog:
        return HEALTH_UNKNOWN
    try:
        return dir_mod.health(client.compute_services(region))
    except AdminRequired as exc:
        LOG.warning("%s", exc)
        return HEALTH_FORBIDDEN
    except RegionError as exc:
        LOG.warning("%s", exc)
        return HEALTH_UNREACHABLE


def health_of(client: Client, names: Iterable[str]) -> dict[str, str]:
    """Health of each PoP by name, its region asked with our credentials.
    """
    names = list(names)
    if not names:
        return {}
    catalog = set(client.regions())
    workers = min(MAX_PARALLEL, len(names))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        found = pool.map(lambda n: region_health(client, n, catalog), names)
        return dict(zip(names, found, strict=True))
