"""``discovery-nova cloud demo``: the PoPs of a running cloud cooperating.

Run against the local cloud as a user would, with openstacksdk and the
``discovery`` cloud of the state directory's clouds.yaml, every server
asked at the first PoP (the *origin*):

a. locality: one server per PoP with ``--hint near=<PoP>``;
b. overflow: the origin filled to what placement says it can hold, then
   one more server, which lands at its nearest neighbour; the origin lists
   it (status, availability zone) and deleting it there deletes it at the
   PoP it runs at;
c. a malformed hint (``max_rtt_ms=abc``): ERROR, with the fault naming it;
d. unless skipped: the PoP running the overflowed server is killed, the
   origin rebuilds it at another PoP; the killed PoP, restarted, deletes
   its stale copy.

Every server it created is deleted at the end, failure or not, and
checked gone at every PoP: the demo leaves the cloud as it found it.
What it saw goes to ``discovery_nova.cloud.demo_report``.
"""

from collections.abc import Callable
from collections.abc import Iterable
import datetime
import math
from pathlib import Path
import re
import time

from openstack import config as os_config
from openstack import exceptions as sdk_exc
import openstack.connection

from discovery_nova.cloud import launcher
from discovery_nova.cloud import pop_registry
from discovery_nova.cloud import services
from discovery_nova.cloud.demo_report import DemoResult
from discovery_nova.cloud.demo_report import Hop
from discovery_nova.cloud.demo_report import PopPoint
from discovery_nova.cloud.demo_report import Row
from discovery_nova.cloud.settings import CLOUD_NAME
from discovery_nova.cloud.settings import CloudSettings
from discovery_nova.locality.pop import KEY_POP
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.locality.pop import PopMetadataError
from discovery_nova.locality.rtt import Reference
from discovery_nova.locality.rtt import estimate_rtt
from discovery_nova.sim.topology import PlanetLabTopology

FLAVOR = 'dn.tiny'
#: Seconds for a server to become ACTIVE (or ERROR).
BOOT_TIMEOUT = 180.0
#: Seconds from killing a PoP until its server runs elsewhere: the
#: membership timeout, then a rebuild.
FAILOVER_TIMEOUT = 300.0
#: Seconds for a deleted server (or a stale copy) to be gone everywhere.
GONE_TIMEOUT = 120.0
POLL_INTERVAL = 1.0
#: The origin is filled with at most this many servers; a bigger PoP is
#: refused rather than flooded.
MAX_FILLERS = 64
#: Further boots, after the fillers, waiting for one to land elsewhere.
MAX_EXTRA_BOOTS = 4
#: Instance actions the discovery conductor records per PoP tried.
_TRIED = re.compile(r'^(?:schedule at|forward to) (\S+)')
#: The flavor field each resource class of placement is counted against.
_FLAVOR_FIELDS = {'VCPU': 'vcpus', 'MEMORY_MB': 'ram', 'DISK_GB': 'disk'}


class DemoError(RuntimeError):
    """The demo cannot run, or the cloud did not do what it should."""


def check_cloud(state_dir: Path) -> CloudSettings:
    """The settings of the cloud running from ``state_dir``, or an error
    saying what to do first."""
    settings = CloudSettings.load(state_dir)
    alive = launcher.running(state_dir)
    if settings is None or not alive:
        raise DemoError('no cloud in %s; run discovery-nova cloud up first'
                        % state_dir)
    missing = [s for s in services.all_specs(settings)
               if s.name not in alive]
    if missing:
        pops = sorted({s.pop for s in missing if s.pop})
        what = ('start it with "discovery-nova cloud start-pop %s"'
                % pops[0] if len(pops) == 1 and
                all(s.pop for s in missing) else
                'bring the cloud down and up again')
        raise DemoError('the cloud in %s is not fully running (not '
                        'running: %s); %s' % (
                            state_dir, ', '.join(s.name for s in missing),
                            what))
    if not (state_dir / 'clouds.yaml').exists():
        raise DemoError('%s has no clouds.yaml; bring the cloud down and up '
                        'again' % state_dir)
    return settings


def connect(settings: CloudSettings) -> dict[str, object]:
    """An openstacksdk connection per PoP (region), from the state
    directory's clouds.yaml only (no environment variables)."""
    config = os_config.OpenStackConfig(
        config_files=[str(settings.state_dir / 'clouds.yaml')],
        vendor_files=[], load_envvars=False)
    return {pop.name: openstack.connection.Connection(
                config=config.get_one(cloud=CLOUD_NAME,
                                      region_name=pop.name))
            for pop in settings.layout.pops}


def pop_directory(conn) -> dict[str, PopDescriptor]:
    """The PoPs one PoP's nova knows, from its PoP aggregates."""
    found = {}
    for aggregate in conn.compute.aggregates():
        meta = aggregate.metadata or {}
        if KEY_POP not in meta:
            continue
        try:
            descriptor = PopDescriptor.from_metadata(meta)
        except PopMetadataError as exc:
            raise DemoError('aggregate %s: %s' % (aggregate.name,
                                                  exc)) from None
        found[descriptor.name] = descriptor
    return found


def capacity(conn, flavor) -> tuple[int, int, int]:
    """(free slots for ``flavor``, vCPUs, vCPUs used) over the PoP's
    resource providers, as placement counts them."""
    slots = vcpus = used_vcpus = 0
    for provider in conn.placement.resource_providers():
        usages = conn.placement.get(
            '/resource_providers/%s/usages' % provider.id).json()['usages']
        fits = math.inf
        for inventory in conn.placement.resource_provider_inventories(
                provider):
            total = int((inventory.total - inventory.reserved)
                        * inventory.allocation_ratio)
            used = usages.get(inventory.resource_class, 0)
            if inventory.resource_class == 'VCPU':
                vcpus += total
                used_vcpus += used
            need = _FLAVOR_FIELDS.get(inventory.resource_class)
            amount = getattr(flavor, need) if need else 0
            if amount:
                fits = min(fits, max(total - used, 0) // amount)
        slots += 0 if math.isinf(fits) else int(fits)
    return slots, vcpus, used_vcpus


def path_of(conn, server_id: str) -> list[Hop]:
    """The PoPs tried for a server, oldest first: the origin's instance
    actions ``schedule at X`` / ``forward to Y`` and their events."""
    actions = list(conn.compute.server_actions(server_id))
    actions.reverse()  # nova lists the newest first
    hops = []
    for action in actions:
        match = _TRIED.match(action.action or '')
        if match is None:
            continue
        detail = conn.compute.get_server_action(action.request_id,
                                                server_id)
        events = list(detail.events or ())
        if events:
            accepted = all(e.result == 'Success' for e in events)
        else:
            accepted = action.message != 'Error'
        reason = '; '.join(_short(e.details) for e in events if e.details)
        hops.append(Hop(match.group(1), accepted, reason))
    return hops


def _short(details: str, limit: int = 200) -> str:
    """An event's details without the conductor's ``declined:`` prefix,
    to its first line (a remote error carries its whole traceback)."""
    text = details.strip()
    if text.startswith('declined:'):
        text = text[len('declined:'):].strip()
    text = text.splitlines()[0].strip() if text else ''
    return text if len(text) <= limit else text[:limit - 3] + '...'


class Demo:
    """One run of the scenario; ``result`` holds what was seen so far."""

    def __init__(self, state_dir: Path, progress: Callable[[str], None],
                 skip_failure: bool = False):
        self.state_dir = Path(state_dir)
        self.progress = progress
        self.skip_failure = skip_failure
        self.settings = check_cloud(self.state_dir)
        self.pops = [p.name for p in self.settings.layout.pops]
        self.origin = self.pops[0]
        self.conns = connect(self.settings)
        self.matrix = pop_registry.measured_rtts(self.settings.layout,
                                                 PlanetLabTopology())
        self.directory: dict[str, PopDescriptor] = {}
        self.result = DemoResult(origin=self.origin, pops=[], rows=[])
        #: id -> name of every server this run created (all at origin).
        self.created: dict[str, str] = {}
        #: id -> when it was asked for (monotonic).
        self._booted_at: dict[str, float] = {}
        #: The PoP this run killed and has not restarted yet.
        self._down: str | None = None
        self._started = time.monotonic()
        self._flavor = None
        self._image = None

    # -- the run ---------------------------------------------------------

    def run(self) -> DemoResult:
        try:
            self._setup()
            self._locality()
            overflowed = self._overflow()
            self._malformed()
            if not self.skip_failure:
                self._failure(overflowed)
            self._delete_and_follow([overflowed])
        finally:
            self._cleanup()
            self.result.seconds = time.monotonic() - self._started
        return self.result

    def _setup(self) -> None:
        origin = self.conns[self.origin]
        self.directory = pop_directory(origin)
        unknown = [p for p in self.pops if p not in self.directory]
        if unknown:
            raise DemoError('%s does not know PoP(s) %s (no PoP aggregate); '
                            'was the cloud brought up completely?'
                            % (self.origin, ', '.join(unknown)))
        self._flavor = origin.compute.find_flavor(FLAVOR,
                                                  ignore_missing=False)
        self._image = origin.image.find_image(launcher.IMAGE_NAME,
                                              ignore_missing=False)
        for name in self.pops:
            descriptor = self.directory[name]
            vec = descriptor.coordinate.vec if descriptor.coordinate else ()
            _, vcpus, _ = capacity(self.conns[name], self._flavor)
            self.result.pops.append(PopPoint(
                name, float(vec[0]) if vec else 0.0,
                float(vec[1]) if len(vec) > 1 else 0.0,
                descriptor.coordinate.height if descriptor.coordinate
                else 0.0, descriptor.error, vcpus))
        self.progress('origin %s; PoPs %s; estimated/matrix RTT from it: %s'
                      % (self.origin, ', '.join(self.pops), ', '.join(
                          '%s %s/%s ms' % (p, _ms(self._est(p)),
                                           _ms(self._measured(p)))
                          for p in self.pops if p != self.origin)))

    def _locality(self) -> None:
        self.progress('(a) locality: one server per PoP, asked at %s with '
                      '--hint near=<PoP>' % self.origin)
        ids = {self._boot('demo-near-%s' % pop, {'near': pop}): pop
               for pop in self.pops}
        seen = self._wait(ids, 'the locality servers')
        for server_id, pop in ids.items():
            row = self._row(server_id, seen[server_id], 'locality',
                            'near=%s' % pop)
            if row.landed_at != pop:
                row.note = 'asked near %s, landed at %s' % (pop,
                                                            row.landed_at)
        self._delete_and_follow(list(ids), quiet=True)
        self.progress('deleted the locality servers at %s; gone at every '
                      'PoP' % self.origin)

    def _overflow(self) -> str:
        origin = self.conns[self.origin]
        slots, vcpus, used = capacity(origin, self._flavor)
        if slots > MAX_FILLERS:
            raise DemoError(
                '%s has room for %d more %s servers (%d vCPUs): too many to '
                'fill for a demo (at most %d); bring the cloud up with '
                '--compute-size 4:4096' % (self.origin, slots, FLAVOR,
                                           vcpus, MAX_FILLERS))
        self.progress('(b) overflow: placement at %s: %d vCPUs, %d used, '
                      'room for %d more %s; filling it'
                      % (self.origin, vcpus, used, slots, FLAVOR))
        fillers = [self._boot('demo-fill-%d' % (i + 1))
                   for i in range(slots)]
        seen = self._wait(fillers, 'the %d fillers' % slots)
        stayed = [i for i in fillers
                  if seen[i][0].availability_zone == self.origin]
        if fillers:
            row = self._row(fillers[0], (seen[fillers[0]][0], max(
                s for _, s in seen.values())), 'overflow', '',
                name='demo-fill', count=len(fillers))
            if len(stayed) != len(fillers):
                row.note = '%d of them landed elsewhere already' % (
                    len(fillers) - len(stayed))
        for attempt in range(MAX_EXTRA_BOOTS):
            name = 'demo-overflow' if not attempt else \
                'demo-overflow-%d' % (attempt + 1)
            server_id = self._boot(name)
            server, seconds = self._wait([server_id], name)[server_id]
            row = self._row(server_id, (server, seconds), 'overflow', '')
            if row.landed_at != self.origin:
                meta = server.metadata or {}
                self.progress(
                    '%s lists %s: %s, availability zone %s, metadata '
                    'discovery_pop=%s discovery_origin=%s'
                    % (self.origin, name, server.status,
                       server.availability_zone, meta.get('discovery_pop'),
                       meta.get('discovery_origin')))
                return server_id
            row.note = 'stayed at %s: placement showed less room' \
                % self.origin
        raise DemoError('%s took %d servers beyond what placement showed '
                        'room for; none was sent to another PoP'
                        % (self.origin, MAX_EXTRA_BOOTS))

    def _malformed(self) -> None:
        self.progress('(c) malformed hint: max_rtt_ms=abc')
        server_id = self._boot('demo-bad-hint', {'max_rtt_ms': 'abc'})
        seen = self._wait([server_id], 'demo-bad-hint', want='ERROR')
        row = self._row(server_id, seen[server_id], 'malformed',
                        'max_rtt_ms=abc', quiet=True)
        fault = (seen[server_id][0].fault or {}).get('message', '')
        row.note = 'fault: %s' % (fault or '(none)')
        self.progress('demo-bad-hint: %s after %.1f s, fault: %s'
                      % (row.status, seen[server_id][1], fault))
        if 'max_rtt_ms' not in fault:
            raise DemoError('the fault of demo-bad-hint does not name the '
                            'hint max_rtt_ms: %r' % fault)
        self._delete_and_follow([server_id], quiet=True)

    def _failure(self, server_id: str) -> None:
        origin = self.conns[self.origin]
        before = origin.compute.get_server(server_id)
        victim = before.availability_zone
        tried_before = len(path_of(origin, server_id))
        self.progress('(d) failure: killing %s, which runs %s'
                      % (victim, self.created[server_id]))
        self._down = victim
        self.result.killed_pop = victim
        launcher.stop_pop(self.state_dir, victim, kill=True,
                          progress=self.progress)
        killed_at = time.monotonic()
        last = (before.status, victim)

        def moved():
            nonlocal last
            server = origin.compute.get_server(server_id)
            now = (server.status, server.availability_zone)
            if now != last:
                self.progress('%s shows %s %s at %s'
                              % (self.origin, self.created[server_id],
                                 now[0], now[1]))
                last = now
            if server.status == 'ERROR' or (
                    server.status == 'ACTIVE' and
                    server.availability_zone not in (victim, None)):
                return server
            return None

        server = _poll(moved, FAILOVER_TIMEOUT, 'the origin to show %s '
                       'ACTIVE at a PoP other than %s'
                       % (self.created[server_id], victim))
        row = self._row(server_id, (server, time.monotonic() - killed_at),
                        'failure', '', name='%s (rebuilt)'
                        % self.created[server_id], skip_hops=tried_before)
        why = _declined(row.path) or 'no reason recorded'
        row.note = 'seconds counted from the kill of %s; declined by %s' \
            % (victim, why)
        failed = None
        if server.status == 'ERROR':
            row.note = 'not rebuilt: %s' % why
            log = self.settings.log_dir / ('%s.nova-conductor.log'
                                           % self.origin)
            failed = ('%s could not rebuild %s after %s died (%s); see %s'
                      % (self.origin, self.created[server_id], victim, why,
                         log))
        self.progress('restarting %s' % victim)
        began = datetime.datetime.now(datetime.UTC)
        launcher.start_pop(self.state_dir, victim, progress=self.progress)
        self._down = None
        if failed is not None:
            raise DemoError(failed)
        self._stale_copy(victim, server_id, began)

    def _stale_copy(self, pop: str, server_id: str,
                    began: datetime.datetime) -> None:
        """Note what the restarted ``pop`` did with its copy of a server
        that now runs elsewhere: it should delete it, maybe before its API
        answers again (then nova there lists it as deleted)."""
        name = self.created[server_id]
        copy = self._find(pop, server_id)
        if copy is not None:
            self.progress('%s came back with a stale copy of %s (%s); '
                          'waiting for it to delete it'
                          % (pop, name, copy.status))
            _poll(lambda: self._find(pop, server_id) is None, GONE_TIMEOUT,
                  '%s to delete its stale copy of %s' % (pop, name))
        deleted = list(self.conns[pop].compute.servers(
            details=True, all_projects=True, deleted=True, uuid=server_id))
        when = _utc(deleted[0].terminated_at) if deleted else None
        if when is None:
            note = '%s came back without a copy of %s' % (pop, name)
        else:
            note = ('%s came back with a stale copy of %s and deleted it '
                    '%.1f s after its restart began'
                    % (pop, name, (when - began).total_seconds()))
        self.result.notes.append(note)
        self.progress(note)

    # -- helpers ---------------------------------------------------------

    def _boot(self, name: str, hints: dict | None = None) -> str:
        server = self.conns[self.origin].compute.create_server(
            name=name, flavor_id=self._flavor.id, image_id=self._image.id,
            networks='none', scheduler_hints=hints or {})
        self.created[server.id] = name
        self._booted_at[server.id] = time.monotonic()
        return server.id

    def _wait(self, ids: Iterable[str], what: str,
              want: str = 'ACTIVE') -> dict[str, tuple]:
        """Each server of ``ids`` (at the origin) once in status ``want``,
        with the seconds since it was asked for."""
        pending = set(ids)
        seen: dict[str, tuple] = {}
        conn = self.conns[self.origin]

        def check():
            for server in conn.compute.servers(details=True):
                if server.id not in pending:
                    continue
                if server.status == want:
                    seen[server.id] = (server, time.monotonic()
                                       - self._booted_at[server.id])
                    pending.discard(server.id)
                elif server.status == 'ERROR':
                    raise DemoError('%s went to ERROR: %s' % (
                        server.name, (server.fault or {}).get('message')))
            return not pending

        _poll(check, BOOT_TIMEOUT, '%s to be %s' % (what, want))
        return seen

    def _row(self, server_id: str, seen: tuple, scenario: str, hint: str,
             name: str | None = None, count: int = 1, quiet: bool = False,
             skip_hops: int = 0) -> Row:
        """The row of a server ``seen`` (server, seconds) at the origin,
        added to the result and, unless ``quiet``, shown. A server in
        ERROR landed nowhere; ``skip_hops`` leaves out the PoPs tried
        before (for a server placed again)."""
        server, seconds = seen
        landed = None if server.status == 'ERROR' else \
            server.availability_zone or None
        row = Row(server=name or self.created[server_id], scenario=scenario,
                  count=count,
                  asked_at=self.origin, hint=hint, landed_at=landed,
                  status=server.status,
                  est_rtt_ms=self._est(landed) if landed else None,
                  matrix_rtt_ms=self._measured(landed) if landed else None,
                  seconds_to_active=None if landed is None else seconds,
                  path=path_of(self.conns[self.origin],
                               server_id)[skip_hops:])
        if _declined(row.path):
            row.note = 'declined by %s' % _declined(row.path)
        self.result.rows.append(row)
        if not quiet:
            self.progress('%s: %s at %s after %.1f s (path %s)'
                          % (row.server if count == 1 else '%d x %s'
                             % (count, row.server), row.status,
                             landed or 'no PoP', seconds, row.path_text()))
        return row

    def _est(self, pop: str) -> float | None:
        """RTT from the origin estimated as the conductor does; None when
        unknown."""
        if pop == self.origin:
            return 0.0
        if pop not in self.directory:
            return None
        rtt = estimate_rtt(Reference.of_pop(self.directory[self.origin]),
                           self.directory[pop]).rtt_ms
        return rtt if math.isfinite(rtt) else None

    def _measured(self, pop: str) -> float | None:
        """RTT from the origin in the PlanetLab matrix; None if unknown."""
        if pop == self.origin:
            return 0.0
        return self.matrix.get(self.origin, {}).get(pop)

    def _find(self, pop: str, server_id: str):
        """The server with this id at ``pop``, or None."""
        try:
            return self.conns[pop].compute.get_server(server_id)
        except sdk_exc.NotFoundException:
            return None

    def _delete_and_follow(self, ids: list[str], quiet: bool = False
                           ) -> None:
        """Delete at the origin; wait until no PoP has them; unless
        ``quiet``, note when each was gone at the origin and where it ran.
        """
        origin = self.conns[self.origin].compute
        where = {i: origin.get_server(i).availability_zone for i in ids}
        for server_id in ids:
            origin.delete_server(server_id)
        started = time.monotonic()
        gone_at: dict[tuple[str, str], float] = {}

        def gone() -> bool:
            for server_id in ids:
                for pop in self.pops:
                    if (server_id, pop) not in gone_at and \
                            self._find(pop, server_id) is None:
                        gone_at[server_id, pop] = time.monotonic() - started
            return len(gone_at) == len(ids) * len(self.pops)

        _poll(gone, GONE_TIMEOUT, '%s to be deleted at every PoP'
              % ', '.join(self.created[i] for i in ids))
        for server_id in ids:
            name = self.created.pop(server_id)
            if quiet:
                continue
            ran = where[server_id]
            note = ('deleted %s at %s: gone there after %.1f s, and at %s, '
                    'where it ran, after %.1f s'
                    % (name, self.origin, gone_at[server_id, self.origin],
                       ran, gone_at.get((server_id, ran), math.nan)))
            self.result.notes.append(note)
            self.progress(note)

    def _cleanup(self) -> None:
        """Restart a PoP left killed, delete what is left, check it gone.
        """
        if self._down is not None:
            self.progress('restarting %s before cleaning up' % self._down)
            try:
                launcher.start_pop(self.state_dir, self._down,
                                   progress=self.progress)
                self._down = None
            except Exception as exc:  # report, and still clean up the rest
                self.progress('could not restart %s: %s' % (self._down,
                                                            exc))
        if not self.created:
            return
        self.progress('cleaning up %d server(s)' % len(self.created))
        origin = self.conns[self.origin].compute
        for server_id in list(self.created):
            try:
                origin.delete_server(server_id)
            except sdk_exc.SDKException as exc:
                self.progress('could not delete %s: %s'
                              % (self.created[server_id], exc))
        live = [p for p in self.pops if p != self._down]

        def all_gone() -> bool:
            left = [i for i in self.created
                    if any(self._find(p, i) is not None for p in live)]
            for server_id in set(self.created) - set(left):
                del self.created[server_id]
            return not left

        _poll(all_gone, GONE_TIMEOUT, 'the demo servers to be deleted at '
              'every PoP')
        self.progress('no demo server left at %s' % ', '.join(live))


def _declined(path: list[Hop]) -> str:
    """The PoPs of ``path`` that declined, and why."""
    return '; '.join('%s: %s' % (h.pop, h.reason or 'no reason given')
                     for h in path if not h.accepted)


def _utc(text: str | None) -> datetime.datetime | None:
    """A time as nova shows it (UTC, ISO 8601, maybe without zone)."""
    if not text:
        return None
    when = datetime.datetime.fromisoformat(text.replace('Z', '+00:00'))
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def _ms(value: float | None) -> str:
    return '?' if value is None else '%.0f' % value


def _poll(predicate: Callable[[], object], timeout: float, what: str):
    """Call ``predicate`` until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() > deadline:
            raise DemoError('timed out after %ds waiting for %s'
                            % (timeout, what))
        time.sleep(POLL_INTERVAL)
