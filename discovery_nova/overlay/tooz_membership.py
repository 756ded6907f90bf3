"""Membership through a tooz coordination group.

Each agent joins one tooz group under its member name, with its record
(address plus capabilities such as coordinates and PoP tags) as the tooz
capabilities. Its own loop (``run()``, supervised by the agent) heartbeats
and runs tooz's join/leave watchers every ``heartbeat_interval``; what they
report becomes events pushed to the registered listeners, which never poll.
Every ``refresh_every`` rounds the loop also rereads all records in one call,
which catches capability updates and anything a watcher could not see (a
member that restarted between two rounds).

Backends and how dead members go away (the ``timeout`` argument is handed
to each driver under the option name it reads, unless the URL sets it):

* ``file:///dir`` (the default, below ``state_path``; one host, no server):
  tooz's file driver keeps one record file per member, touches it on every
  heartbeat, and hides records older than its ``timeout`` option (whole
  seconds, so ``timeout`` is rounded up). It never deletes them: a member
  that restarts under the same name finds its stale record, and replaces
  it (leave, then join).
* ``redis://host:6379``: a heartbeat key per member expires after
  ``membership_timeout`` seconds, and readers drop members without one.
* ``etcd3+http://host:2379``: records are bound to a lease of
  ``membership_timeout`` whole seconds that heartbeats refresh.
* ``zookeeper://host:2181``: ephemeral nodes of a session of ``timeout``
  seconds.

A member that finds itself dropped (its loop stalled past the timeout) joins
again and counts it in ``counters['rejoins']``. Member names are unique per
group: joining under a name that has a record replaces that record, since
it is almost always the stale one of the same agent before a restart (a
steadily growing ``rejoins`` betrays two live agents sharing a name). tooz
cannot tell a goodbye from an expiry, so leave events of this backend carry
``LeaveReason.GONE``.

An unreachable server fails ``start()`` at once with one
``MembershipUnavailable`` naming the URL (a TCP handshake is tried first:
redis-py alone would retry a refused connection for a minute), and nothing
stays connected or written.

The tooz calls block; the agent's asyncio loop runs them in a worker thread
and applies what they found (view and listeners) back on the loop thread.
"""

import asyncio
import collections
from collections.abc import Mapping
import dataclasses
import math
import socket
import threading
import time
from typing import Any
import urllib.parse
import uuid

from oslo_log import log as logging
import tooz
from tooz import coordination

from discovery_nova.overlay.errors import MembershipUnavailable
from discovery_nova.overlay.membership import EventKind
from discovery_nova.overlay.membership import LeaveReason
from discovery_nova.overlay.membership import Member
from discovery_nova.overlay.membership import Membership

LOG = logging.getLogger(__name__)

EXPECTED_URLS = ('file:///directory, redis://host:6379, '
                 'etcd3+http://host:2379 or zookeeper://host:2181')


def redact_url(url: str) -> str:
    """``url`` with any password replaced, fit for logs and errors."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return '<unparsable URL>'
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit('@', 1)[1]
    user = parts.username or ''
    return urllib.parse.urlunsplit(parts._replace(
        netloc='%s:***@%s' % (user, netloc)))


def driver_options(scheme: str, timeout: float,
                   op_timeout: float) -> dict[str, str]:
    """Options that give driver ``scheme`` our membership timeout.

    Each tooz driver names (and types) them its own way; unknown drivers
    get none and keep their own defaults.
    """
    whole = str(max(1, math.ceil(timeout)))
    io = str(max(1, math.ceil(op_timeout)))
    if scheme == 'file':
        return {'timeout': whole}
    if scheme in ('redis', 'rediss'):
        return {'timeout': io, 'membership_timeout': repr(float(timeout))}
    if scheme.startswith('etcd3+'):
        return {'timeout': io, 'membership_timeout': whole}
    if scheme in ('zookeeper', 'kazoo'):
        return {'timeout': repr(float(timeout))}
    return {}


#: Port each server-based scheme uses when its URL names none.
DEFAULT_PORTS = {'redis': 6379, 'rediss': 6379, 'etcd3+http': 2379,
                 'etcd3+https': 2379, 'zookeeper': 2181, 'kazoo': 2181}


def check_reachable(url: str, timeout: float) -> None:
    """Fail at once when a server URL's host:port takes no connection.

    Drivers retry a refused connection for up to a minute (redis-py's
    default retries, nested); an agent at start-up must say at once that
    the URL is wrong, and this costs one TCP handshake.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise MembershipUnavailable(
            'membership URL %s has a bad port (%s); expected %s'
            % (redact_url(url), exc, EXPECTED_URLS)) from exc
    try:
        with socket.create_connection((parts.hostname, port),
                                      timeout=timeout):
            pass
    except OSError as exc:
        raise MembershipUnavailable(
            'membership backend %s is unreachable: connecting to %s:%d '
            'failed (%s); expected a reachable tooz backend with groups '
            'such as %s' % (redact_url(url), parts.hostname, port,
                            exc.strerror or exc, EXPECTED_URLS)) from exc


@dataclasses.dataclass
class _Round:
    """What one round in the worker thread saw, applied on the loop."""

    joined: dict[str, Any] = dataclasses.field(default_factory=dict)
    left: list[str] = dataclasses.field(default_factory=list)
    #: Every record, when this round reread them all.
    everyone: dict[str, Any] | None = None


class ToozMembership(Membership):
    """Group membership over any tooz backend with groups."""

    def __init__(self, url: str, group: str = 'discovery-overlay',
                 member: Member | None = None,
                 heartbeat_interval: float = 1.0, timeout: float = 10.0,
                 op_timeout: float = 5.0, refresh_every: int = 10) -> None:
        super().__init__(group, heartbeat_interval, timeout)
        if not isinstance(url, str) or '://' not in url:
            raise MembershipUnavailable(
                'membership URL %r is no tooz URL; expected %s'
                % (url, EXPECTED_URLS))
        if not (math.isfinite(op_timeout) and op_timeout > 0):
            raise ValueError('op_timeout must be a positive number of '
                             'seconds, got %r' % (op_timeout,))
        if refresh_every < 1:
            raise ValueError('refresh_every must be at least 1, got %r'
                             % (refresh_every,))
        self.url = url
        self.scheme = urllib.parse.urlsplit(url).scheme
        self.op_timeout = float(op_timeout)
        self.refresh_every = int(refresh_every)
        self._wanted = member
        self._group_id = group.encode('utf-8')
        self._coordinator: coordination.CoordinationDriver | None = None
        self._member_id: bytes | None = None
        #: Serialises tooz calls between the loop's worker and callers.
        self._lock = threading.RLock()
        self._seen: list[tuple[str, bytes]] = []
        #: Whether the group still lists us, as far as the watchers tell.
        self._listed = False
        self._rounds = 0
        self._full_next = True
        self.counters: collections.Counter[str] = collections.Counter()
        self._bad_records: set[tuple[str, str]] = set()

    # -- connection ------------------------------------------------------

    def now(self) -> float:
        return time.monotonic()

    @property
    def started(self) -> bool:
        return self._coordinator is not None

    def _unavailable(self, doing: str, exc: BaseException
                     ) -> MembershipUnavailable:
        detail = '%s: %s' % (type(exc).__name__, exc)
        if exc.__cause__ is not None:
            detail += ' (%s)' % (exc.__cause__,)
        return MembershipUnavailable(
            'membership backend %s could not %s (group %r): %s; '
            'expected a reachable tooz backend with groups such as %s'
            % (redact_url(self.url), doing, self.group, detail,
               EXPECTED_URLS))

    def start(self) -> None:
        """Connect, create the group if needed and set up the watchers.

        With a ``member`` given to the constructor, join it too. Any
        failure leaves nothing behind: the connection is closed again and
        one ``MembershipUnavailable`` names the URL.
        """
        with self._lock:
            if self._coordinator is None:
                name = (self._wanted.name if self._wanted is not None else
                        'observer-%s' % uuid.uuid4().hex)
                self._connect(name.encode('utf-8'))
        if self._wanted is not None and self.member is None:
            try:
                self.join(self._wanted)
            except Exception:
                self.stop()
                raise

    def _connect(self, member_id: bytes) -> None:
        check_reachable(self.url, self.op_timeout)
        options = {k: v for k, v in driver_options(
            self.scheme, self.timeout, self.op_timeout).items()
            if k not in urllib.parse.parse_qs(
                urllib.parse.urlsplit(self.url).query)}
        try:
            coordinator = coordination.get_coordinator(
                self.url, member_id, **options)
        except Exception as exc:
            raise MembershipUnavailable(
                'membership URL %s: no tooz driver for scheme %r (%s: %s); '
                'expected %s' % (redact_url(self.url), self.scheme,
                                 type(exc).__name__, exc, EXPECTED_URLS)
            ) from exc
        try:
            coordinator.start(start_heart=False)
        except Exception as exc:
            raise self._unavailable('connect', exc) from exc
        try:
            try:
                coordinator.create_group(self._group_id).get(
                    timeout=self.op_timeout)
            except coordination.GroupAlreadyExist:
                pass
            coordinator.watch_join_group(self._group_id, self._on_joined)
            coordinator.watch_leave_group(self._group_id, self._on_left)
        except Exception as exc:
            self._close(coordinator)
            if isinstance(exc, tooz.NotImplemented):
                raise MembershipUnavailable(
                    'membership backend %s: tooz driver %r has no group '
                    'membership; expected %s'
                    % (redact_url(self.url), self.scheme, EXPECTED_URLS)
                ) from exc
            raise self._unavailable('create or watch the group', exc
                                    ) from exc
        self._coordinator = coordinator
        self._member_id = member_id
        self._seen.clear()
        self._full_next = True
        LOG.info('Membership connected to %(url)s, group %(group)s',
                 {'url': redact_url(self.url), 'group': self.group})

    @staticmethod
    def _close(coordinator: coordination.CoordinationDriver) -> None:
        try:
            coordinator.stop()
        except Exception:
            LOG.debug('Closing a tooz coordinator failed', exc_info=True)

    def stop(self) -> None:
        """Leave the group (best effort) and disconnect."""
        with self._lock:
            coordinator, self._coordinator = self._coordinator, None
            self.member = None
            if coordinator is not None:
                self._close(coordinator)
            self._view.clear()
            self._seen.clear()

    # -- this member -----------------------------------------------------

    def join(self, member: Member) -> None:
        if not isinstance(member, Member):
            raise TypeError('join() takes a Member, got %r' % (member,))
        with self._lock:
            if self._coordinator is None:
                self._wanted = member
                self.start()
                return
            if self.member is not None:
                raise MembershipUnavailable(
                    'already joined group %r as %r; leave() first'
                    % (self.group, self.member.name))
            member_id = member.name.encode('utf-8')
            if member_id != self._member_id:
                # tooz binds the member id to the connection.
                old, self._coordinator = self._coordinator, None
                self._close(old)
                self._connect(member_id)
            try:
                self._join_group(member)
            except MembershipUnavailable:
                raise
            except Exception as exc:
                raise self._unavailable('join %r' % member.name, exc
                                        ) from exc
            self._wanted = self.member = member
            self._listed = True
            LOG.info('Joined membership group %(group)s as %(name)s',
                     {'group': self.group, 'name': member.name})

    def _join_group(self, member: Member) -> None:
        """Join, replacing a stale record of an earlier incarnation."""
        assert self._coordinator is not None
        record = member.to_record()
        try:
            self._coordinator.join_group(self._group_id, record).get(
                timeout=self.op_timeout)
        except coordination.MemberAlreadyExist:
            LOG.info('Replacing the stale record of %(name)s in group '
                     '%(group)s', {'name': member.name, 'group': self.group})
            self._coordinator.leave_group(self._group_id).get(
                timeout=self.op_timeout)
            self._coordinator.join_group(self._group_id, record).get(
                timeout=self.op_timeout)
        except coordination.GroupNotCreated:
            try:
                self._coordinator.create_group(self._group_id).get(
                    timeout=self.op_timeout)
            except coordination.GroupAlreadyExist:
                pass
            self._coordinator.join_group(self._group_id, record).get(
                timeout=self.op_timeout)

    def leave(self) -> None:
        with self._lock:
            if self.member is None or self._coordinator is None:
                self.member = None
                return
            self.member = None
            try:
                self._coordinator.leave_group(self._group_id).get(
                    timeout=self.op_timeout)
            except coordination.MemberNotJoined:
                pass
            except Exception as exc:
                raise self._unavailable('leave', exc) from exc

    def update_capabilities(self, capabilities: Mapping[str, Any]) -> None:
        """Publish new capabilities (the file driver does it by rejoining,
        so its readers may briefly see this member leave and come back)."""
        with self._lock:
            if self.member is None or self._coordinator is None:
                raise MembershipUnavailable(
                    'update_capabilities() before join(): nothing '
                    'published in group %r' % (self.group,))
            updated = self.member.with_capabilities(capabilities)
            try:
                try:
                    self._coordinator.update_capabilities(
                        self._group_id, updated.to_record()).get(
                            timeout=self.op_timeout)
                except tooz.NotImplemented:
                    self._coordinator.leave_group(self._group_id).get(
                        timeout=self.op_timeout)
                    self._join_group(updated)
            except Exception as exc:
                raise self._unavailable('update capabilities', exc) from exc
            self._wanted = self.member = updated

    # -- detection -------------------------------------------------------

    def _on_joined(self, event: coordination.MemberJoinedGroup) -> None:
        self._seen.append(('join', event.member_id))

    def _on_left(self, event: coordination.MemberLeftGroup) -> None:
        self._seen.append(('leave', event.member_id))

    def _round(self) -> _Round:
        """Heartbeat and look; runs in a worker thread, touches no view."""
        with self._lock:
            coordinator = self._coordinator
            if coordinator is None:
                raise MembershipUnavailable(
                    'membership of group %r is not started' % (self.group,))
            found = _Round()
            try:
                coordinator.heartbeat()
                self.counters['heartbeats'] += 1
                coordinator.run_watchers(timeout=self.op_timeout)
                seen, self._seen = self._seen, []
                for what, raw in seen:
                    if raw == self._member_id:
                        self._listed = what == 'join'
                        continue
                    name = self._decode(raw)
                    if name is None:
                        continue
                    if what == 'leave':
                        found.joined.pop(name, None)
                        found.left.append(name)
                        continue
                    try:
                        found.joined[name] = (
                            coordinator.get_member_capabilities(
                                self._group_id, raw).get(
                                    timeout=self.op_timeout))
                    except coordination.MemberNotJoined:
                        continue
                if self.member is not None and not self._listed:
                    self._rejoin()
                self._rounds += 1
                if self._full_next or self._rounds % self.refresh_every == 0:
                    try:
                        everyone = coordinator.get_members_with_capabilities(
                            self._group_id).get(timeout=self.op_timeout)
                    except coordination.GroupNotCreated:
                        # Deleted under us: nobody is in it any more.
                        everyone = {}
                    found.everyone = {}
                    for raw, record in everyone.items():
                        name = self._decode(raw)
                        if name is not None and raw != self._member_id:
                            found.everyone[name] = record
                    self._full_next = False
            except MembershipUnavailable:
                raise
            except Exception as exc:
                self.counters['failed_rounds'] += 1
                raise self._unavailable('heartbeat or read the group', exc
                                        ) from exc
            return found

    def _rejoin(self) -> None:
        """We were dropped (a stall past the timeout): publish us again."""
        assert self.member is not None
        self.counters['rejoins'] += 1
        LOG.warning('Member %(name)s was dropped from group %(group)s '
                    '(heartbeats late by more than %(timeout)s s, or '
                    'another agent uses the same name); joining again',
                    {'name': self.member.name, 'group': self.group,
                     'timeout': self.timeout})
        self._join_group(self.member)
        self._listed = True

    def _decode(self, raw: bytes | str) -> str | None:
        if isinstance(raw, str):
            return raw
        try:
            return raw.decode('utf-8')
        except UnicodeDecodeError:
            self._bad_record(repr(raw), 'member id is not UTF-8')
            return None

    def _bad_record(self, name: str, why: str) -> None:
        self.counters['invalid_records'] += 1
        if (name, why) not in self._bad_records:
            self._bad_records.add((name, why))
            LOG.warning('Ignoring member %(name)s of group %(group)s: '
                        '%(why)s', {'name': name, 'group': self.group,
                                    'why': why})

    def _parse(self, name: str, record: Any) -> Member | None:
        try:
            return Member.from_record(name, record)
        except ValueError as exc:
            self._bad_record(name, str(exc))
            return None

    def _apply_round(self, found: _Round) -> None:
        """Turn what a round saw into view changes and events (loop)."""
        for name in found.left:
            known = self._view.get(name)
            if known is not None:
                self._apply(EventKind.LEAVE, known, LeaveReason.GONE)
        for name, record in found.joined.items():
            member = self._parse(name, record)
            if member is not None:
                self._apply(EventKind.JOIN, member)
        if found.everyone is not None:
            for name in list(self._view):
                if name not in found.everyone:
                    self._apply(EventKind.LEAVE, self._view[name],
                                LeaveReason.GONE)
            for name, record in found.everyone.items():
                member = self._parse(name, record)
                if member is None:
                    if name in self._view:
                        self._apply(EventKind.LEAVE, self._view[name],
                                    LeaveReason.GONE)
                    continue
                self._apply(EventKind.JOIN, member)

    def poll(self) -> None:
        """One round in the calling thread (tests, tools without a loop)."""
        self._apply_round(self._round())

    async def run(self) -> None:
        """Heartbeat and deliver events until cancelled.

        Connects (and joins the constructor's member) first if needed. A
        backend failure raises ``MembershipUnavailable`` out of here, for
        the supervisor to log, count and restart after its backoff.
        """
        if self._coordinator is None or (
                self._wanted is not None and self.member is None):
            await asyncio.to_thread(self.start)
        while True:
            found = await asyncio.to_thread(self._round)
            self._apply_round(found)
            await asyncio.sleep(self.heartbeat_interval)
