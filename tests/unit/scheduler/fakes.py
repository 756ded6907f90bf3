"""Small stand-ins for what nova-scheduler hands to filters and weighers.

HostState and Aggregate carry far more than our plugins read; these carry
exactly what they read (host, nodename, aggregates with metadata and hosts,
instances, free RAM), so a test states a scenario in a few lines. Requests
are real ``nova.objects.RequestSpec`` objects without a context, which makes
the plugins take the PoP directory from the host states.
"""

import dataclasses
import itertools
import uuid

from nova import objects

import discovery_nova.conf  # noqa: F401 (registers our options)
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.overlay.coordinates import Coordinate

objects.register_all()

_IDS = itertools.count(1)


@dataclasses.dataclass(eq=False)
class FakeAggregate:
    name: str
    metadata: dict
    hosts: list
    id: int = dataclasses.field(default_factory=lambda: next(_IDS))


@dataclasses.dataclass(eq=False)
class FakeHostState:
    host: str
    aggregates: list
    instances: dict = dataclasses.field(default_factory=dict)
    free_ram_mb: int = 4096

    @property
    def nodename(self) -> str:
        return self.host


def pop(name: str, x: float, y: float = 0.0, error: float = 0.05,
        **fields) -> PopDescriptor:
    """A PoP at (x, y) on a plane, so RTTs are easy to read off."""
    return PopDescriptor(name, Coordinate((x, y), 0.0), error, **fields)


def hosts_for(*pops: PopDescriptor, per_pop: int = 2,
              extra_metadata: dict | None = None) -> list[FakeHostState]:
    """``per_pop`` hosts named ``<pop>-c<k>`` in one aggregate per PoP."""
    states = []
    for descriptor in pops:
        names = ['%s-c%d' % (descriptor.name, k)
                 for k in range(1, per_pop + 1)]
        metadata = descriptor.to_metadata()
        metadata.update((extra_metadata or {}).get(descriptor.name, {}))
        aggregate = FakeAggregate(descriptor.name, metadata, list(names))
        states.extend(FakeHostState(name, [aggregate]) for name in names)
    return states


def instance(image: str | None = None) -> objects.Instance:
    inst = objects.Instance(uuid=str(uuid.uuid4()))
    if image is not None:
        inst.image_ref = image
    return inst


def spec(hints: dict | None = None, image: str | None = None,
         image_size: int | None = None, rebuild: bool = False,
         instance_uuid: str | None = None) -> objects.RequestSpec:
    """A RequestSpec as nova-scheduler gets it: hints are lists."""
    raw = {k: v if isinstance(v, list) else [v]
           for k, v in (hints or {}).items()}
    if rebuild:
        raw['_nova_check_type'] = ['rebuild']
    request = objects.RequestSpec(
        scheduler_hints=raw,
        instance_uuid=instance_uuid or str(uuid.uuid4()))
    if image is not None:
        meta = objects.ImageMeta(id=image)
        if image_size is not None:
            meta.size = image_size
        request.image = meta
    return request


def names(host_states) -> list[str]:
    return [h.host for h in host_states]


def pops_of(host_states) -> set[str]:
    return {h.host.rsplit('-', 1)[0] for h in host_states}
