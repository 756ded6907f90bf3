"""Write a PoP's descriptor into its host aggregate through the Nova API.

The overlay agent of a PoP knows the PoP's coordinate, error estimate, tags
and energy data; nova-scheduler reads them from aggregate metadata. This is
the bridge, over the compute API with openstacksdk, so it needs admin
credentials (``clouds.yaml``) and no database access:

    conn = openstack.connect(cloud='pop-admin')
    AggregateSync(conn.compute).sync(descriptor, hosts=['cmp1', 'cmp2'])

The agent's ``AggregatePublisher`` calls ``sync`` every
``[discovery_aggregates] publish_interval``, holding values that barely
moved; the call sends only the keys whose value changed, so an unchanged
PoP costs one ``GET /os-aggregates``. The aggregate is
created when missing, named after the PoP and carrying it as availability
zone, which is how users see PoPs (``openstack availability zone list``).
"""

from collections.abc import Callable
from collections.abc import Iterable
import dataclasses

from oslo_log import log as logging

from discovery_nova.locality.pop import KEY_POP
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.locality.pop import is_metadata_key

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class SyncResult:
    """What one ``sync`` changed."""

    aggregate_id: int | str
    created: bool = False
    metadata_set: dict[str, str | None] = dataclasses.field(
        default_factory=dict)
    hosts_added: list[str] = dataclasses.field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.metadata_set or self.hosts_added)


class AggregateSync:
    """Keep the aggregate of a PoP equal to its descriptor.

    ``compute`` is an openstacksdk compute proxy (``conn.compute``).
    """

    def __init__(self, compute):
        self.compute = compute

    def find(self, pop_name: str, aggregates: Iterable | None = None):
        """The aggregate of ``pop_name``: by its metadata, else by name.

        ``aggregates``: the aggregates as the caller listed them, to find
        several PoPs' aggregates with one request; None lists them now.
        """
        by_name = None
        if aggregates is None:
            aggregates = self.compute.aggregates()
        for aggregate in aggregates:
            metadata = aggregate.metadata or {}
            if metadata.get(KEY_POP) == pop_name:
                return aggregate
            if aggregate.name == pop_name:
                by_name = aggregate
        return by_name

    def sync(self, pop: PopDescriptor, hosts: Iterable[str] = (),
             availability_zone: str | None = None,
             owned: Callable[[str], bool] = is_metadata_key,
             aggregates: Iterable | None = None) -> SyncResult:
        """Create or update the aggregate of ``pop``; add missing hosts.

        Keys of ours the descriptor no longer has (say an image dropped from
        the cache, or a client prefix the agent no longer measures) are
        removed; hosts are only added, never removed, as a
        host may leave a PoP only by an admin's decision. ``owned`` narrows
        which absent keys are removed: a writer that knows only part of
        the descriptor (the agent knows no image cache) leaves the others'
        keys alone. ``aggregates`` as for ``find``.
        """
        aggregate = self.find(pop.name, aggregates)
        result = SyncResult(aggregate_id='')
        if aggregate is None:
            aggregate = self.compute.create_aggregate(
                name=pop.name,
                availability_zone=availability_zone or pop.name)
            result.created = True
            LOG.info("Created aggregate %(id)s for PoP %(pop)s",
                     {'id': aggregate.id, 'pop': pop.name})
        result.aggregate_id = aggregate.id
        current = dict(aggregate.metadata or {})
        wanted = pop.to_metadata()
        changes: dict[str, str | None] = {
            key: value for key, value in wanted.items()
            if current.get(key) != value}
        changes.update({key: None for key in current
                        if is_metadata_key(key) and owned(key) and
                        key not in wanted})
        if changes:
            aggregate = self.compute.set_aggregate_metadata(aggregate,
                                                            changes)
            result.metadata_set = changes
            LOG.info("PoP %(pop)s aggregate %(id)s metadata set: "
                     "%(changes)s", {'pop': pop.name, 'id': aggregate.id,
                                     'changes': changes})
        present = set(aggregate.hosts or ())
        for host in hosts:
            if host not in present:
                aggregate = self.compute.add_host_to_aggregate(aggregate,
                                                               host)
                present.add(host)
                result.hosts_added.append(host)
                LOG.info("Added host %(host)s to PoP %(pop)s",
                         {'host': host, 'pop': pop.name})
        return result
