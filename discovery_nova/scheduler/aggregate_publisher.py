"""Keep this PoP's host aggregate equal to what its overlay agent knows.

nova-scheduler and the conductor read where a PoP is from the metadata of
its host aggregate; the overlay agent is what knows it (its Vivaldi
coordinate and error, the RTTs it measured to its nearest PoPs and to
client prefixes). ``discovery-agent`` runs an ``AggregatePublisher`` beside
the agent when ``[discovery_aggregates] auth_type`` is set: every
``publish_interval`` it takes the agent's ``locality_view()`` on the agent's
loop, adds what the configuration says of the PoP (``[discovery]``
``pop_name``, ``pop_tags``, ``pop_renewable_share``, ``pop_pue``), and hands
the blocking part to a thread of its own: list the nova-compute services,
then ``AggregateSync.sync`` with their hosts (added, never removed).

It must not rewrite metadata every interval because a coordinate jitters,
so what it writes is rounded and held:

* values are rounded to 0.01 ms (coordinates, RTTs) and 0.001 (error);
* the coordinate and error published last are kept until the coordinate
  moved by ``coordinate_ms`` (2 ms, measured as the agent measures moves:
  Euclidean distance plus the change of height) or the error changed by
  ``error`` (0.05); then both are rewritten. Vivaldi estimates are
  good to some 10 % of an RTT, and a PoP a few ms away is ranked by its
  measured RTT rather than by coordinates, so a 2 ms move changes no
  placement worth a write;
* an RTT (to a PoP or to a client prefix) keeps its published value until
  it changed by 10 % of it, or 0.5 ms for RTTs under 5 ms; PoPs and
  prefixes that appear or disappear are written at once.

``AggregateSync`` then sends only the keys that differ from the aggregate,
so a settled PoP costs two GET requests per interval and no write.

With ``publish_other_pops`` it also writes, from the same list of
aggregates, those of the other live PoPs as their membership records place
them (``LocalityView.others``: coordinate, error, tags), held by the same
thresholds and created without hosts: the PoP directory the conductor
ranks remote PoPs by. An aggregate holding hosts of this deployment is a
PoP whose own agent publishes it here and is left alone, so two agents
never rewrite one aggregate in turn. The
agent writes only keys it is configured to know: tags and energy data it
publishes when set in ``[discovery]``, and it leaves those keys alone
otherwise (an admin or another tool may keep them); image and capacity keys
are never its business.
"""

import asyncio
from collections.abc import Callable
from collections.abc import Mapping
from concurrent import futures
import dataclasses
import math

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import loading as ks_loading
from openstack import exceptions as sdk_exc
import openstack.connection
from oslo_config import cfg
from oslo_log import log as logging

from discovery_nova.conf import aggregates as aggregates_conf
from discovery_nova.locality import pop as pop_mod
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.overlay.agent import LocalityView
from discovery_nova.overlay.agent import PeerPlace
from discovery_nova.overlay.coordinates import Coordinate
from discovery_nova.scheduler.sync import AggregateSync
from discovery_nova.scheduler.sync import SyncResult

LOG = logging.getLogger(__name__)

#: Seconds an API request may take when ``[discovery_aggregates] timeout``
#: is unset: a hung API must not hold the agent's stop for long.
DEFAULT_TIMEOUT = 30.0

#: Failures of the API or of reaching it: logged, retried next interval.
API_ERRORS = (sdk_exc.SDKException, ks_exc.ClientException)


class PublisherConfigError(ValueError):
    """The configuration cannot run the publisher; the text says why."""


@dataclasses.dataclass(frozen=True)
class PopIdentity:
    """What the configuration says of this PoP (``[discovery]``)."""

    name: str
    tags: frozenset[str] = frozenset()
    renewable_share: float | None = None
    pue: float | None = None

    def __post_init__(self):
        if not pop_mod.POP_NAME_RE.match(self.name):
            raise PublisherConfigError(
                'PoP name %r cannot name an aggregate: expected letters, '
                'digits, "-", "_" and ".", at most 63 characters '
                '([discovery] pop_name)' % self.name)
        for tag in self.tags:
            if not pop_mod.TAG_RE.match(tag):
                raise PublisherConfigError(
                    '[discovery] pop_tags: %r is not a tag; expected '
                    'letters, digits, "_", ".", ":" and "-", at most 64 '
                    'characters' % tag)


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """How much a published value must change to be rewritten."""

    coordinate_ms: float = 2.0
    error: float = 0.05
    rtt_fraction: float = 0.1
    rtt_floor_ms: float = 0.5


def describe(identity: PopIdentity, view: LocalityView) -> PopDescriptor:
    """This PoP's descriptor from config and the agent's view, rounded."""
    return PopDescriptor(
        name=identity.name,
        coordinate=_rounded(view.coordinate),
        error=round(view.error, 3),
        tags=identity.tags,
        renewable_share=identity.renewable_share,
        pue=identity.pue,
        measured_rtt={n: round(r, 2) for n, r in view.measured_rtt.items()},
        client_rtt={p: round(r, 2) for p, r in view.client_rtt.items()})


def _rounded(coord: Coordinate) -> Coordinate:
    """``coord`` to 0.01 ms, as published."""
    return Coordinate(tuple(round(x, 2) for x in coord.vec),
                      round(coord.height, 2))


def describe_other(name: str, place: PeerPlace) -> PopDescriptor:
    """Another PoP's descriptor from its membership record, rounded as
    ``describe`` rounds; ValueError when the record cannot name a PoP
    aggregate (its name, a tag)."""
    if not pop_mod.POP_NAME_RE.match(name):
        raise ValueError('%r is no PoP name' % name)
    for tag in place.tags:
        if not pop_mod.TAG_RE.match(tag):
            raise ValueError('%r is no tag' % tag)
    return PopDescriptor(
        name=name,
        coordinate=_rounded(place.coordinate),
        error=round(place.error, 3), tags=frozenset(place.tags))


def _other_owns(descriptor: PopDescriptor) -> Callable[[str], bool]:
    """The keys a record of another PoP speaks for: its name, coordinate
    and error, and its tags when it has some."""
    owned = {pop_mod.KEY_POP, pop_mod.KEY_COORD, pop_mod.KEY_ERROR}
    if descriptor.tags:
        owned.add(pop_mod.KEY_TAGS)
    return owned.__contains__


def settle(new: PopDescriptor, published: PopDescriptor | None,
           thresholds: Thresholds = Thresholds()) -> PopDescriptor:
    """``new``, with the values of ``published`` it did not move far from.
    """
    if published is None:
        return new
    coord, error = new.coordinate, new.error
    old = published.coordinate
    if (coord is not None and old is not None and
            len(coord.vec) == len(old.vec) and
            math.dist(coord.vec, old.vec) + abs(coord.height - old.height)
            < thresholds.coordinate_ms and
            abs(error - published.error) < thresholds.error):
        coord, error = old, published.error
    return dataclasses.replace(
        new, coordinate=coord, error=error,
        measured_rtt=_settle_rtts(new.measured_rtt, published.measured_rtt,
                                  thresholds),
        client_rtt=_settle_rtts(new.client_rtt, published.client_rtt,
                                thresholds))


def _settle_rtts(new: dict[str, float], old: dict[str, float],
                 thresholds: Thresholds) -> dict[str, float]:
    settled = {}
    for key, rtt in new.items():
        before = old.get(key)
        if before is not None and abs(rtt - before) < max(
                thresholds.rtt_floor_ms, thresholds.rtt_fraction * before):
            rtt = before
        settled[key] = rtt
    return settled


class AggregatePublisher:
    """Publishes one PoP's descriptor into its aggregate, on a thread.

    ``connection`` is an openstacksdk ``Connection`` with admin rights on
    the compute API of this PoP's deployment. Nothing is sent before the
    first ``publish``: its compute proxy authenticates when first used, on
    the publisher's thread, so an identity service that is down delays the
    publications, not the agent.
    """

    def __init__(self, connection, identity: PopIdentity,
                 interval: float, thresholds: Thresholds = Thresholds(),
                 other_pops: bool = True):
        if not (math.isfinite(interval) and interval > 0):
            raise PublisherConfigError(
                '[discovery_aggregates] publish_interval must be a positive '
                'number of seconds, got %r' % (interval,))
        self.connection = connection
        self.identity = identity
        self.interval = float(interval)
        self.thresholds = thresholds
        #: The descriptor last written successfully: the thresholds'
        #: reference.
        self.published: PopDescriptor | None = None
        #: Whether the other PoPs' aggregates are written too, and what
        #: was last written for each.
        self.other_pops = other_pops
        self.published_others: dict[str, PopDescriptor] = {}

    def owns(self, key: str) -> bool:
        """Whether the agent may remove ``key`` when it has no value."""
        identity = self.identity
        if key == pop_mod.KEY_TAGS:
            return bool(identity.tags)
        if key == pop_mod.KEY_RENEWABLE:
            return identity.renewable_share is not None
        if key == pop_mod.KEY_PUE:
            return identity.pue is not None
        return key in (pop_mod.KEY_POP, pop_mod.KEY_COORD,
                       pop_mod.KEY_ERROR, pop_mod.KEY_RTT) or key.startswith(
                           pop_mod.KEY_CLIENT_RTT)

    def compute_hosts(self) -> list[str]:
        """Hosts of this deployment's nova-compute services."""
        return sorted({service.host for service in
                       self.connection.compute.services(
                           binary='nova-compute')})

    def publish(self, view: LocalityView) -> SyncResult:
        """One publication (blocking: run it off the agent's loop)."""
        descriptor = settle(describe(self.identity, view), self.published,
                            self.thresholds)
        hosts = self.compute_hosts()
        sync = AggregateSync(self.connection.compute)
        aggregates = list(self.connection.compute.aggregates())
        result = sync.sync(descriptor, hosts, owned=self.owns,
                           aggregates=aggregates)
        self.published = descriptor
        if not result.changed:
            LOG.debug('PoP %(pop)s aggregate %(id)s unchanged',
                      {'pop': descriptor.name, 'id': result.aggregate_id})
        if self.other_pops:
            self.publish_others(view.others, sync, aggregates)
        return result

    def publish_others(self, others: Mapping[str, PeerPlace],
                       sync: AggregateSync, aggregates: list) -> None:
        """Write the aggregates of the other PoPs (see the module
        docstring); ``aggregates`` as listed at the start of this
        publication."""
        for name, place in sorted(others.items()):
            if name == self.identity.name:
                continue
            found = sync.find(name, aggregates)
            if found is not None and found.hosts:
                continue  # a PoP of this deployment publishes itself
            try:
                descriptor = describe_other(name, place)
            except ValueError as exc:
                LOG.debug('Member %(name)s cannot be published as a PoP: '
                          '%(err)s', {'name': name, 'err': exc})
                continue
            descriptor = settle(descriptor, self.published_others.get(name),
                                self.thresholds)
            sync.sync(descriptor, owned=_other_owns(descriptor),
                      aggregates=aggregates)
            self.published_others[name] = descriptor

    async def run(self, view: Callable[[], LocalityView]) -> None:
        """Publish every interval until cancelled; API failures are logged
        and retried at the next interval.

        ``view`` is called on the running loop (the agent's
        ``locality_view``); the API calls run on a thread of their own, so
        the loop never waits for them. A call still in flight when the
        task is cancelled finishes on its thread, within the session's
        timeout.
        """
        loop = asyncio.get_running_loop()
        executor = futures.ThreadPoolExecutor(
            1, thread_name_prefix='aggregate-publisher')
        try:
            while True:
                await asyncio.sleep(self.interval)
                local = view()
                try:
                    await loop.run_in_executor(executor, self.publish, local)
                except API_ERRORS as exc:
                    LOG.warning('Publishing PoP %(pop)s to its aggregate '
                                'failed, next try in %(interval)s s: '
                                '%(err)s', {'pop': self.identity.name,
                                            'interval': self.interval,
                                            'err': exc})
        finally:
            executor.shutdown(wait=False, cancel_futures=True)


def connection_from_conf(conf: cfg.ConfigOpts
                         ) -> openstack.connection.Connection | None:
    """openstacksdk on ``[discovery_aggregates]``, or None when its
    ``auth_type`` is unset. Raises PublisherConfigError when the auth
    plugin or its options are unusable; nothing is sent here."""
    group_name = aggregates_conf.GROUP
    group = conf[group_name]
    if not group.auth_type:
        return None
    try:
        auth = ks_loading.load_auth_from_conf_options(conf, group_name)
        session = ks_loading.load_session_from_conf_options(
            conf, group_name, auth=auth,
            timeout=group.timeout or DEFAULT_TIMEOUT)
        adapter = ks_loading.load_adapter_from_conf_options(
            conf, group_name, session=session, auth=auth)
    except (ks_exc.ClientException, TypeError) as exc:
        # TypeError: keystoneauth's word for contradicting adapter options.
        raise PublisherConfigError('[%s] %s' % (group_name, exc)) from None
    return openstack.connection.Connection(
        session=session, region_name=adapter.region_name,
        app_name='discovery-agent',
        compute_service_type=adapter.service_type,
        compute_service_name=adapter.service_name,
        compute_interface=adapter.interface,
        compute_endpoint_override=adapter.endpoint_override,
        compute_connect_retries=adapter.connect_retries,
        compute_connect_retry_delay=adapter.connect_retry_delay,
        compute_status_code_retries=adapter.status_code_retries,
        compute_status_code_retry_delay=adapter.status_code_retry_delay)


def from_conf(conf: cfg.ConfigOpts, pop_name: str
              ) -> AggregatePublisher | None:
    """The publisher of PoP ``pop_name``, or None when it is off."""
    connection = connection_from_conf(conf)
    if connection is None:
        return None
    discovery = conf.discovery
    identity = PopIdentity(pop_name, frozenset(discovery.pop_tags),
                           discovery.pop_renewable_share, discovery.pop_pue)
    group = conf[aggregates_conf.GROUP]
    return AggregatePublisher(connection, identity, group.publish_interval,
                              other_pops=group.publish_other_pops)
