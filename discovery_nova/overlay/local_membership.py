"""In-process membership: the simulator's and the unit tests' backend.

A ``LocalHub`` plays the part of a tooz server inside one process: it keeps
named groups of member records, and every started ``LocalMembership`` of a
group is told of the others' joins, leaves and capability updates through
the same ``NotificationDispatcher`` semantics as the tooz backend.

Failure detection follows the heartbeat model without paying for a timer
per heartbeat: a live member is taken to beat every ``heartbeat_interval``
since it joined, so when it ``crash()``-es (stops without saying goodbye,
as a killed agent does) its last beat is known and it expires ``timeout``
seconds after that. With a clock (an ``Endpoint`` or the simulator's
``VirtualClock``) one timer fires the leave at that moment; without one,
``poll()`` (or ``run()``) notices it on the monotonic clock. Ten thousand
simulated members thus cost nothing while they live.
"""

import asyncio
from collections.abc import Mapping
import dataclasses
import math
import time
from typing import Any
import urllib.parse

from oslo_log import log as logging

from discovery_nova.overlay.endpoint import TimerHandle
from discovery_nova.overlay.errors import MembershipUnavailable
from discovery_nova.overlay.membership import Clock
from discovery_nova.overlay.membership import EventKind
from discovery_nova.overlay.membership import LeaveReason
from discovery_nova.overlay.membership import Member
from discovery_nova.overlay.membership import Membership
from discovery_nova.overlay.membership import MembershipEvent
from discovery_nova.overlay.membership import Registration

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class _Record:
    member: Member
    owner: 'LocalMembership'
    joined_at: float
    #: Set when the owner crashed: when it expires.
    expires_at: float | None = None
    timer: TimerHandle | None = None


class _LocalGroup:
    """Records of one group and the started memberships watching it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.records: dict[str, _Record] = {}
        #: Started memberships that have listeners: only they need telling,
        #: which keeps a join O(listening) rather than O(members).
        self.listening: dict[LocalMembership, None] = {}

    def tell(self, kind: EventKind, member: Member,
             reason: LeaveReason | None = None) -> None:
        for watcher in list(self.listening):
            watcher._tell(kind, member, reason)

    def remove(self, name: str, reason: LeaveReason) -> None:
        record = self.records.pop(name, None)
        if record is None:
            return
        if record.timer is not None:
            record.timer.cancel()
        self.tell(EventKind.LEAVE, record.member, reason)

    def expire(self, now: float) -> None:
        for name, record in list(self.records.items()):
            if record.expires_at is not None and record.expires_at <= now:
                self.remove(name, LeaveReason.TIMEOUT)


class LocalHub:
    """Named in-process groups; share one hub between memberships that
    should see each other (one per simulation run)."""

    def __init__(self) -> None:
        self._groups: dict[str, _LocalGroup] = {}

    def group(self, name: str) -> _LocalGroup:
        group = self._groups.get(name)
        if group is None:
            group = self._groups[name] = _LocalGroup(name)
        return group

    def member_names(self, group: str) -> list[str]:
        """Names currently recorded in ``group`` (for tests and reports)."""
        return sorted(self.group(group).records)


#: The hub of memberships built without one (e.g. loaded by stevedore).
DEFAULT_HUB = LocalHub()
_NAMED_HUBS: dict[str, LocalHub] = {}


def hub_for_url(url: str | None) -> LocalHub:
    """``local://NAME`` names a hub of this process; anything else (such
    as a tooz URL passed along from configuration) means the default."""
    if url:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == 'local' and (parts.netloc or parts.path):
            name = parts.netloc + parts.path
            hub = _NAMED_HUBS.get(name)
            if hub is None:
                hub = _NAMED_HUBS[name] = LocalHub()
            return hub
    return DEFAULT_HUB


class LocalMembership(Membership):
    """Membership within one process, optionally on a (virtual) clock."""

    def __init__(self, group: str = 'discovery-overlay',
                 heartbeat_interval: float = 1.0, timeout: float = 10.0,
                 clock: Clock | None = None,
                 hub: LocalHub | None = None,
                 url: str | None = None) -> None:
        super().__init__(group, heartbeat_interval, timeout)
        self.clock = clock
        self.hub = hub if hub is not None else hub_for_url(url)
        self._group = self.hub.group(group)
        self._started = False
        self._crashed = False

    def now(self) -> float:
        return self.clock.now() if self.clock is not None else (
            time.monotonic())

    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> None:
        if self._started:
            return
        if self._crashed:
            raise MembershipUnavailable(
                'this local membership of group %r crashed; build a new '
                'LocalMembership to come back' % (self.group,))
        self._started = True
        if self.dispatcher.has_listeners:
            self._group.listening[self] = None
            for member in self._others():
                self._tell(EventKind.JOIN, member)

    def register_listener(self, listener: object | None = None, *,
                          replay: bool = True, **handlers: Any
                          ) -> Registration:
        registration = super().register_listener(
            listener, replay=replay, **handlers)
        if self._started:
            self._group.listening[self] = None
        return registration

    def unregister_listener(self, registration: Registration) -> None:
        super().unregister_listener(registration)
        if not self.dispatcher.has_listeners:
            self._group.listening.pop(self, None)

    def _others(self) -> list[Member]:
        """The group's records are the view: a thousand simulated members
        share one table instead of holding a thousand copies each."""
        if not self._started:
            return []
        own = self.member.name if self.member is not None else None
        return [record.member for name, record in
                self._group.records.items() if name != own]

    def _tell(self, kind: EventKind, member: Member,
              reason: LeaveReason | None = None) -> None:
        if self.member is not None and member.name == self.member.name:
            return
        self.dispatcher.post(MembershipEvent(kind, member, self.now(), reason))

    def stop(self) -> None:
        if not self._started:
            return
        if self.member is not None:
            self.leave()
        self._group.listening.pop(self, None)
        self._started = False

    def join(self, member: Member) -> None:
        if not isinstance(member, Member):
            raise TypeError('join() takes a Member, got %r' % (member,))
        if not self._started:
            raise MembershipUnavailable(
                'join(%r) before start(): local membership of group %r is '
                'not started' % (member.name, self.group))
        if self.member is not None:
            raise MembershipUnavailable(
                'already joined group %r as %r; leave() first'
                % (self.group, self.member.name))
        existing = self._group.records.get(member.name)
        if existing is not None:
            if existing.expires_at is None:
                raise MembershipUnavailable(
                    'member name %r is already live in group %r; names are '
                    'unique per group' % (member.name, self.group))
            # A crashed incarnation not yet expired: the new one replaces it.
            self._group.remove(member.name, LeaveReason.GONE)
        self.member = member
        self._group.records[member.name] = _Record(member, self, self.now())
        self._group.tell(EventKind.JOIN, member)

    def leave(self) -> None:
        if self.member is None:
            return
        name = self.member.name
        record = self._group.records.get(name)
        if record is not None and record.owner is self:
            self._group.remove(name, LeaveReason.LEFT)
        self.member = None

    def update_capabilities(self, capabilities: Mapping[str, Any]) -> None:
        if self.member is None:
            raise MembershipUnavailable(
                'update_capabilities() before join(): nothing published in '
                'group %r' % (self.group,))
        self.member = self.member.with_capabilities(capabilities)
        self._group.records[self.member.name].member = self.member
        self._group.tell(EventKind.UPDATE, self.member)

    def crash(self) -> None:
        """Stop as a killed agent would: no goodbye, no more heartbeats.

        The others see this member leave (reason ``TIMEOUT``) ``timeout``
        seconds after its last heartbeat.
        """
        self._group.listening.pop(self, None)
        self._started = False
        self._crashed = True
        if self.member is None:
            return
        record = self._group.records.get(self.member.name)
        self.member = None
        if record is None or record.owner is not self:
            return
        now = self.now()
        beats = math.floor((now - record.joined_at) / self.heartbeat_interval)
        last_beat = record.joined_at + beats * self.heartbeat_interval
        record.expires_at = last_beat + self.timeout
        if self.clock is not None:
            clock, group = self.clock, self._group
            record.timer = clock.call_later(
                record.expires_at - now, lambda: group.expire(clock.now()))

    def poll(self) -> None:
        """Expire crashed members whose timeout passed (clockless use)."""
        self._group.expire(self.now())

    async def run(self) -> None:
        """Poll every heartbeat interval; only needed without a clock."""
        while True:
            self.poll()
            await asyncio.sleep(self.heartbeat_interval)
