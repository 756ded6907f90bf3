"""AggregateSync against an in-memory compute API.

The functional test drives it through openstacksdk and the real Nova API;
this one covers what that scenario does not reach: removed keys, a PoP
aggregate renamed by an admin, unchanged PoPs.
"""

import dataclasses

from discovery_nova.locality import pop as pop_mod
from discovery_nova.scheduler.sync import AggregateSync
from tests.unit.scheduler.fakes import pop


@dataclasses.dataclass
class Aggregate:
    id: int
    name: str
    availability_zone: str | None
    metadata: dict
    hosts: list


class InMemoryCompute:
    """The four aggregate calls of openstacksdk's compute proxy."""

    def __init__(self):
        self.store: dict[int, Aggregate] = {}
        self.calls: list[str] = []

    def aggregates(self):
        self.calls.append('list')
        return [dataclasses.replace(a, metadata=dict(a.metadata),
                                    hosts=list(a.hosts))
                for a in self.store.values()]

    def create_aggregate(self, name, availability_zone=None):
        self.calls.append('create')
        agg = Aggregate(len(self.store) + 1, name, availability_zone, {}, [])
        if availability_zone:
            agg.metadata['availability_zone'] = availability_zone
        self.store[agg.id] = agg
        return dataclasses.replace(agg)

    def set_aggregate_metadata(self, aggregate, metadata):
        self.calls.append('set_metadata')
        stored = self.store[aggregate.id]
        for key, value in metadata.items():
            if value is None:
                stored.metadata.pop(key, None)
            else:
                stored.metadata[key] = value
        return dataclasses.replace(stored, metadata=dict(stored.metadata))

    def add_host_to_aggregate(self, aggregate, host):
        self.calls.append('add_host')
        self.store[aggregate.id].hosts.append(host)
        return dataclasses.replace(self.store[aggregate.id])


def test_create_update_and_remove_keys():
    compute = InMemoryCompute()
    sync = AggregateSync(compute)
    first = pop('par1', 3, tags=frozenset({'country:FR'}), pue=1.3)
    result = sync.sync(first, ['c1', 'c2'])
    assert result.created and result.hosts_added == ['c1', 'c2']
    stored = compute.store[result.aggregate_id]
    assert stored.availability_zone == 'par1'
    assert pop_mod.PopDescriptor.from_metadata(stored.metadata) == first

    compute.calls.clear()
    assert not sync.sync(first, ['c1']).changed
    assert compute.calls == ['list']

    moved = pop('par1', 4)          # coordinate moved, tags and PUE gone
    result = sync.sync(moved)
    assert set(result.metadata_set) == {pop_mod.KEY_COORD,
                                        pop_mod.KEY_TAGS, pop_mod.KEY_PUE}
    assert result.metadata_set[pop_mod.KEY_TAGS] is None
    assert pop_mod.PopDescriptor.from_metadata(stored.metadata) == moved
    assert stored.metadata['availability_zone'] == 'par1'


def test_found_by_metadata_after_a_rename():
    compute = InMemoryCompute()
    sync = AggregateSync(compute)
    aggregate_id = sync.sync(pop('par1', 0)).aggregate_id
    compute.store[aggregate_id].name = 'Paris'
    result = sync.sync(pop('par1', 1))
    assert not result.created
    assert result.aggregate_id == aggregate_id
    assert len(compute.store) == 1
