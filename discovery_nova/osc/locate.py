"""Find the PoP a server runs at, and say how it was found.

A server ID is first looked up on the overlay's ring, through the current
region's overlay agent: the conductors keep a record ``server:<id>`` of
every server there (where it runs, the PoP keeping the record), wherever
it was asked, so any PoP finds any server in one routed lookup. The
region named by the record is then asked for the server itself. Only when
the overlay has no record (or there is no agent to ask, or the reference
is a name) are the regions searched, as follows.

A server keeps one UUID across PoPs. When the conductor of the PoP where a
server was asked forwards it, the record left there carries the metadata
``discovery_pop=<PoP where it runs>`` and ``discovery_origin=<PoP where it
was asked>``: the lookup follows that pointer to the region of the same
name. A server the current region does not know is looked for in the other
regions, nearest first, as the conductor would have offered it. Every
region asked is recorded with its answer, in order.
"""

from collections.abc import Sequence
import dataclasses

from osc_lib import exceptions
from oslo_log import log as logging

from discovery_nova.locality.pop import KEY_POP
from discovery_nova.osc import survey
from discovery_nova.osc.client import Client
from discovery_nova.osc.client import RegionError

LOG = logging.getLogger(__name__)

#: Set by the conductor on a forwarded server: the PoP where it was asked.
KEY_ORIGIN = 'discovery_origin'
HOST = 'OS-EXT-SRV-ATTR:host'
AVAILABILITY_ZONE = 'OS-EXT-AZ:availability_zone'

NOT_FOUND = 'not found'


@dataclasses.dataclass
class Location:
    """Where a server was found, and every (region, answer) on the way."""

    server: dict
    region: str
    path: list[tuple[str, str]]
    #: How it was found: ``overlay``, or ``region search (why)``.
    method: str = 'region search'
    #: The agents the overlay's lookup went through, when it was asked.
    route: str | None = None

    @property
    def metadata(self) -> dict:
        return self.server.get('metadata') or {}

    @property
    def pop(self) -> str:
        return self.metadata.get(KEY_POP) or self.region

    @property
    def host(self) -> str | None:
        return self.server.get(HOST)


def search_order(client: Client, here: str,
                 regions: Sequence[str]) -> list[str]:
    """The regions other than ``here``, nearest PoP first.

    Regions that are no PoP of the directory (or all of them, when the
    directory cannot be read, e.g. without the admin role) follow in name
    order.
    """
    try:
        ranked = [e.name for e, _ in
                  survey.read_directory(client, here).ranked()]
    except exceptions.CommandError as exc:
        LOG.warning("Other regions are asked in name order, not nearest "
                    "first: %s", exc)
        ranked = []
    order = [name for name in ranked if name in regions and name != here]
    order += sorted(set(regions) - set(order) - {here})
    return order


def find_in_region(client: Client, region: str, ref: str) -> dict | None:
    """The server ``ref`` (an ID, else an exact name) in ``region``."""
    server = client.server(region, ref)
    if server is not None:
        return server
    named = client.servers_named(region, ref)
    if len(named) > 1:
        raise exceptions.CommandError(
            '%d servers are named %r in region %s; pass the server ID '
            'instead (one of: %s)'
            % (len(named), ref, region,
               ', '.join(sorted(s['id'] for s in named))))
    return named[0] if named else None


def _found(server: dict) -> str:
    return 'found: %s on %s' % (server.get('status', '?'),
                                server.get(HOST) or 'a hidden host')


def locate(client: Client, here: str, others: Sequence[str], ref: str,
           regions: Sequence[str]) -> Location:
    """Locate server ``ref`` starting at region ``here``.

    :param others: the other regions, in the order to ask them.
    :param regions: every region of the catalog with a compute API.
    :raises CommandError: the server is in none of the regions asked.
    """
    queue = [here] + [r for r in others if r != here]
    path: list[tuple[str, str]] = []
    asked: set[str] = set()
    server_id = None
    #: (region, record) of the last record that pointed elsewhere.
    pointer = None
    while queue:
        region = queue.pop(0)
        if region in asked:
            continue
        asked.add(region)
        try:
            server = (client.server(region, server_id) if server_id
                      else find_in_region(client, region, ref))
        except RegionError as exc:
            path.append((region, 'no answer: %s' % exc.reason))
            continue
        if server is None:
            path.append((region, NOT_FOUND))
            continue
        server_id = server['id']
        metadata = server.get('metadata') or {}
        target = metadata.get(KEY_POP)
        if not target or target == region:
            path.append((region, _found(server)))
            return Location(server, region, path)
        origin = metadata.get(KEY_ORIGIN, '?')
        if target not in regions:
            path.append((region, 'record says it runs at %s (asked at %s), '
                         'which has no compute endpoint in the catalog'
                         % (target, origin)))
            return Location(server, region, path)
        path.append((region, 'forwarded to %s (asked at %s)'
                     % (target, origin)))
        pointer = (region, target)
        if target not in asked:
            queue.insert(0, target)
    asked_text = '; '.join('%s: %s' % hop for hop in path)
    if pointer is not None:
        raise exceptions.CommandError(
            'server %s: its record in %s says it runs at %s, but no region '
            'has it (asked %s)' % (ref, pointer[0], pointer[1], asked_text))
    raise exceptions.CommandError(
        'no server %r in any region (asked %s); expected the ID or name of '
        'a server of the current project' % (ref, asked_text))


# The overlay --------------------------------------------------------------

#: Where the current region's agent is, and the key file, in clouds.yaml
#: (per region: ``regions: [{name: ..., values: {...}}]``).
CONFIG_AGENT = 'discovery_overlay_agent'
CONFIG_KEY_FILE = 'discovery_overlay_key_file'
OVERLAY = 'overlay'


@dataclasses.dataclass
class Overlay:
    """The current region's overlay agent, or why there is none."""

    client: object | None
    reason: str = ''


def overlay_for(agent: str | None, key_file: str | None) -> Overlay:
    """The agent at ``agent`` (host:port) opened with the key in
    ``key_file``; an Overlay without client says what is missing."""
    from discovery_nova.overlay.client import AgentClient
    from discovery_nova.overlay.client import AgentUnavailable
    from discovery_nova.overlay.client import read_key_file

    if not agent:
        return Overlay(None, 'no overlay agent for this region: pass '
                       '--overlay-agent HOST:PORT or set %s in clouds.yaml'
                       % CONFIG_AGENT)
    if not key_file:
        return Overlay(None, 'no overlay deployment key: pass '
                       '--overlay-key-file PATH or set %s in clouds.yaml'
                       % CONFIG_KEY_FILE)
    try:
        return Overlay(AgentClient.from_address(
            agent, read_key_file(key_file), name='openstack-cli'))
    except AgentUnavailable as exc:
        return Overlay(None, str(exc))


def _route(found) -> str:
    return '%s (record at %s, %d hop%s)' % (
        ' -> '.join(found.path) or found.node, found.node, found.hops,
        '' if found.hops == 1 else 's')


def locate_anywhere(client: Client, overlay: Overlay, here: str,
                    others: Sequence[str], ref: str,
                    regions: Sequence[str]) -> Location:
    """Locate ``ref`` through the overlay's record of it, else by asking
    the regions (``locate``); the Location says which was used."""
    from oslo_utils import uuidutils

    from discovery_nova.conductor import ring_records
    from discovery_nova.overlay.client import AgentUnavailable

    def search(why: str, path=()) -> Location:
        found = locate(client, here, others, ref, regions)
        found.path = list(path) + found.path
        found.method = 'region search (%s)' % why
        return found

    if not uuidutils.is_uuid_like(ref):
        return search('the overlay keeps records by server ID; %r is a '
                      'name' % ref)
    if overlay.client is None:
        return search(overlay.reason)
    try:
        found = ring_records.RingRecords(overlay.client).server(ref)
    except (AgentUnavailable, ring_records.RecordError) as exc:
        return search('the overlay could not be asked: %s' % exc)
    route = _route(found)
    if not found.found:
        return search('the overlay has no record of %s' % ref,
                      [(OVERLAY, 'no record, via %s' % route)])
    record = found.value
    pop = record.get('pop')
    if record.get('deleted'):
        raise exceptions.CommandError(
            'server %s was deleted: the record kept by %s says so (overlay '
            'lookup via %s)' % (ref, record.get('holder', '?'), route))
    hop = (OVERLAY, 'record at ring node %s after %d hop(s): runs at %s, '
           'record kept by %s (asked at %s)'
           % (found.node, found.hops, pop, record.get('holder', '?'),
              record.get('origin', '?')))
    if pop not in regions:
        return search('the overlay\'s record names %s, which has no compute '
                      'endpoint in the catalog' % pop, [hop])
    try:
        server = client.server(pop, ref)
    except RegionError as exc:
        return search('the overlay\'s record names %s, which gave no '
                      'answer' % pop, [hop, (pop, 'no answer: %s'
                                             % exc.reason)])
    if server is None:
        return search('the overlay\'s record names %s, which does not have '
                      'it' % pop, [hop, (pop, NOT_FOUND)])
    return Location(server, pop, [hop, (pop, _found(server))],
                    method=OVERLAY, route=route)
