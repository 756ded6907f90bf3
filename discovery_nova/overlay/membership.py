"""Membership of the overlay and the notifications it pushes to services.

This is the DISCOVERY paper's Peer Actor / Notification Actor: an overlay
service (ring routing, spiral search, the messaging driver's directory)
declares once what to do when a node joins, leaves or changes its
capabilities, and when one of its overlay neighbour sets changes, and is then
told; it never polls membership. A backend (``tooz_membership``,
``local_membership``; stevedore plugins of ``discovery_nova.overlay.
membership``) detects joins and leaves and hands them to a
``NotificationDispatcher``, which calls every registered listener in turn. A
listener that raises is logged and counted and the others still get the
event, so one broken service cannot blind the rest of the agent.

Events about the local member itself are never delivered: services care
about the other nodes, and their own record is ``Membership.member``.
"""

import abc
import collections
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
import dataclasses
import enum
import math
from typing import Any
from typing import Protocol

from oslo_log import log as logging
import stevedore

from discovery_nova.overlay.coordinates import Coordinate
from discovery_nova.overlay.endpoint import TimerHandle
from discovery_nova.overlay.errors import MembershipUnavailable
from discovery_nova.overlay.peer import PeerRef

LOG = logging.getLogger(__name__)

NAMESPACE = 'discovery_nova.overlay.membership'

#: Longest member name accepted (tooz backends key records by it).
MAX_NAME_LENGTH = 255
#: Version of the record a member publishes in its backend.
RECORD_VERSION = 1


class Clock(Protocol):
    """What a clock-driven backend needs: an ``Endpoint`` or VirtualClock."""

    def now(self) -> float: ...

    def call_later(self, delay: float,
                   callback: Callable[[], None]) -> TimerHandle: ...


def _check_name(name: Any) -> str:
    if (not isinstance(name, str) or not name or
            len(name) > MAX_NAME_LENGTH or not name.isprintable()):
        raise ValueError(
            'a member name is a non-empty printable string of at most %d '
            'characters, got %r' % (MAX_NAME_LENGTH, name))
    return name


def _check_capabilities(capabilities: Any) -> dict[str, Any]:
    if not isinstance(capabilities, Mapping) or not all(
            isinstance(key, str) for key in capabilities):
        raise ValueError('capabilities are a mapping with string keys, got '
                         '%r' % (capabilities,))
    capabilities = dict(capabilities)
    if 'coordinate' in capabilities:
        Coordinate.from_wire(capabilities['coordinate'])
    tags = capabilities.get('tags', [])
    if (not isinstance(tags, (list, tuple)) or
            not all(isinstance(tag, str) for tag in tags)):
        raise ValueError('capability "tags" is a list of strings such as '
                         '["country:FR"], got %r' % (tags,))
    return capabilities


@dataclasses.dataclass(frozen=True)
class Member:
    """One node of the overlay as membership publishes it.

    ``capabilities`` is what the node says about itself, e.g.
    ``{"coordinate": [[x, y, z], height], "tags": ["country:FR"]}``; it is
    copied into the backend at join, so it holds JSON/msgpack-able values.
    """

    peer: PeerRef
    capabilities: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        _check_name(self.peer.name)
        if not isinstance(self.peer.address, str):
            raise ValueError('a member address is "host:port" or "", got %r'
                             % (self.peer.address,))
        object.__setattr__(self, 'capabilities',
                           _check_capabilities(self.capabilities))

    @classmethod
    def create(cls, name: str, address: str = '',
               **capabilities: Any) -> 'Member':
        return cls(PeerRef(name, address), capabilities)

    @property
    def name(self) -> str:
        return self.peer.name

    @property
    def address(self) -> str:
        return self.peer.address

    @property
    def coordinate(self) -> Coordinate | None:
        """The Vivaldi coordinate the member published, if it did."""
        value = self.capabilities.get('coordinate')
        return None if value is None else Coordinate.from_wire(value)

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self.capabilities.get('tags', ()))

    def with_capabilities(self, capabilities: Mapping[str, Any]) -> 'Member':
        return Member(self.peer, dict(capabilities))

    def to_record(self) -> dict[str, Any]:
        """What a backend stores for this member."""
        return {'version': RECORD_VERSION, 'address': self.address,
                'capabilities': dict(self.capabilities)}

    @classmethod
    def from_record(cls, name: str, record: Any) -> 'Member':
        """Parse a record read from a backend, strictly.

        Any other program with access to the backend may have written it,
        so a malformed one raises ``ValueError`` naming what was wrong.
        """
        if not isinstance(record, Mapping):
            raise ValueError(
                'member %r: a record is {"version": %d, "address": '
                '"host:port", "capabilities": {...}}, got %r'
                % (name, RECORD_VERSION, record))
        if record.get('version') != RECORD_VERSION:
            raise ValueError('member %r: record version %d expected, got %r'
                             % (name, RECORD_VERSION, record.get('version')))
        address = record.get('address')
        if not isinstance(address, str):
            raise ValueError('member %r: address is "host:port" or "", got '
                             '%r' % (name, address))
        try:
            return cls(PeerRef(_check_name(name), address),
                       record.get('capabilities') or {})
        except ValueError as exc:
            raise ValueError('member %r: %s' % (name, exc)) from exc


class EventKind(enum.Enum):
    JOIN = 'join'
    LEAVE = 'leave'
    UPDATE = 'update'


class LeaveReason(enum.Enum):
    #: The member said goodbye (``leave()`` or a clean stop).
    LEFT = 'left'
    #: Its heartbeats stopped for longer than the membership timeout.
    TIMEOUT = 'timeout'
    #: The backend dropped it without saying which of the two it was.
    GONE = 'gone'


@dataclasses.dataclass(frozen=True)
class MembershipEvent:
    """A member joined, left, or published new capabilities.

    ``member`` is the record as last known (for a leave: before it left);
    ``reason`` is set on leaves only; ``time`` is on the backend's clock.
    """

    kind: EventKind
    member: Member
    time: float
    reason: LeaveReason | None = None


@dataclasses.dataclass(frozen=True)
class NeighboursChanged:
    """One of this node's overlay neighbour sets changed.

    ``kind`` names the set (``"ring_successors"``, ``"spiral_near"``, ...);
    ``added`` and ``removed`` are the peers that entered and left it.
    """

    kind: str
    added: tuple[PeerRef, ...]
    removed: tuple[PeerRef, ...]


class MembershipListener:
    """Base for listener objects; override the notifications you need.

    Any object with some of these methods can be registered; subclassing
    only saves writing the ones it ignores.
    """

    def on_join(self, event: MembershipEvent) -> None:
        """A member joined (or was already there when we registered)."""

    def on_leave(self, event: MembershipEvent) -> None:
        """A member left or timed out."""

    def on_update(self, event: MembershipEvent) -> None:
        """A member published new capabilities."""

    def on_neighbours_changed(self, event: NeighboursChanged) -> None:
        """One of our overlay neighbour sets changed."""


_HANDLERS = ('on_join', 'on_leave', 'on_update', 'on_neighbours_changed')
_HANDLER_OF_KIND = {EventKind.JOIN: 'on_join', EventKind.LEAVE: 'on_leave',
                    EventKind.UPDATE: 'on_update'}


@dataclasses.dataclass(eq=False)
class Registration:
    """A registered listener; pass it back to unregister."""

    name: str
    handlers: dict[str, Callable[[Any], None]]
    active: bool = True


Event = MembershipEvent | NeighboursChanged


class NotificationDispatcher:
    """Delivers events to listeners, isolating each listener's failures.

    Events are delivered in the order they are posted; an event posted by a
    listener while another is being delivered (a ring service that announces
    new successors from its ``on_leave``) is queued and delivered after the
    current one reached every listener. Not thread-safe: post from the
    thread that owns the overlay services (the agent's event loop or the
    simulator's clock).
    """

    def __init__(self) -> None:
        self._registrations: list[Registration] = []
        self._queue: collections.deque[Event] = collections.deque()
        self._delivering = False
        #: Events posted, by kind (``join``, ``leave``, ``update``,
        #: ``neighbours``).
        self.posted: collections.Counter[str] = collections.Counter()
        #: Listener calls that raised, by listener name.
        self.failures: collections.Counter[str] = collections.Counter()

    @property
    def failures_total(self) -> int:
        return sum(self.failures.values())

    @property
    def has_listeners(self) -> bool:
        return bool(self._registrations)

    @property
    def listeners(self) -> list[str]:
        return [r.name for r in self._registrations]

    def register(self, listener: object | None = None, *,
                 on_join: Callable[[MembershipEvent], None] | None = None,
                 on_leave: Callable[[MembershipEvent], None] | None = None,
                 on_update: Callable[[MembershipEvent], None] | None = None,
                 on_neighbours_changed:
                     Callable[[NeighboursChanged], None] | None = None,
                 name: str | None = None) -> Registration:
        """Register a listener object and/or handler callables.

        Keyword handlers override the object's methods of the same name.
        ``name`` labels the listener in logs and failure counts; it defaults
        to the object's class name or the first handler's qualified name.
        """
        handlers: dict[str, Callable[[Any], None]] = {}
        if listener is not None:
            for attr in _HANDLERS:
                method = getattr(listener, attr, None)
                if method is not None:
                    if not callable(method):
                        raise TypeError('listener %r: %s is not callable'
                                        % (listener, attr))
                    handlers[attr] = method
        given = {'on_join': on_join, 'on_leave': on_leave,
                 'on_update': on_update,
                 'on_neighbours_changed': on_neighbours_changed}
        for attr, handler in given.items():
            if handler is not None:
                if not callable(handler):
                    raise TypeError('%s must be callable, got %r'
                                    % (attr, handler))
                handlers[attr] = handler
        if not handlers:
            raise TypeError('a listener needs at least one of %s'
                            % ', '.join(_HANDLERS))
        if name is None:
            if listener is not None:
                name = type(listener).__name__
            else:
                first = next(iter(handlers.values()))
                name = getattr(first, '__qualname__', repr(first))
        registration = Registration(name, handlers)
        self._registrations.append(registration)
        return registration

    def unregister(self, registration: Registration) -> None:
        registration.active = False
        try:
            self._registrations.remove(registration)
        except ValueError:
            pass

    def post(self, event: Event) -> None:
        """Deliver ``event`` to every listener (queued when re-entered)."""
        if isinstance(event, NeighboursChanged):
            self.posted['neighbours'] += 1
        else:
            self.posted[event.kind.value] += 1
        self._queue.append(event)
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._queue:
                self._deliver(self._queue.popleft())
        finally:
            self._delivering = False

    def post_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.post(event)

    def deliver_to(self, registration: Registration, event: Event) -> None:
        """Deliver one event to one listener only, at once (the replay of
        the current members to a listener that just registered)."""
        self._call(registration, event)

    def notify_neighbours_changed(self, kind: str,
                                  added: Iterable[PeerRef] = (),
                                  removed: Iterable[PeerRef] = ()) -> None:
        """What overlay services call when one of their neighbour sets
        changes; nothing is posted when nothing changed."""
        if not isinstance(kind, str) or not kind:
            raise ValueError('a neighbour set kind is a non-empty string '
                             'such as "ring_successors", got %r' % (kind,))
        added, removed = tuple(added), tuple(removed)
        for peer in added + removed:
            if not isinstance(peer, PeerRef):
                raise TypeError('neighbours are PeerRef objects, got %r'
                                % (peer,))
        if added or removed:
            self.post(NeighboursChanged(kind, added, removed))

    def _deliver(self, event: Event) -> None:
        for registration in list(self._registrations):
            if registration.active:
                self._call(registration, event)

    def _call(self, registration: Registration, event: Event) -> None:
        if isinstance(event, NeighboursChanged):
            attr = 'on_neighbours_changed'
        else:
            attr = _HANDLER_OF_KIND[event.kind]
        handler = registration.handlers.get(attr)
        if handler is None:
            return
        try:
            handler(event)
        except Exception:
            self.failures[registration.name] += 1
            LOG.exception('Membership listener %(name)s failed in '
                          '%(handler)s; the other listeners still get the '
                          'event', {'name': registration.name,
                                    'handler': attr})


class Membership(abc.ABC):
    """A membership backend: this node's record and its view of the others.

    Life cycle: ``start()`` connects, ``join(member)`` publishes this node,
    the backend then detects joins, leaves and capability updates of the
    other members and delivers them to the registered listeners;
    ``leave()`` withdraws this node and ``stop()`` leaves and disconnects.
    ``run()`` is the coroutine an asyncio agent supervises to drive
    heartbeats and detection; clock-driven backends do it with timers.

    ``members()`` reads the local view and never does I/O, so services may
    call it from their handlers.
    """

    def __init__(self, group: str, heartbeat_interval: float,
                 timeout: float) -> None:
        if not isinstance(group, str) or not group:
            raise ValueError('a membership group is a non-empty string, got '
                             '%r' % (group,))
        if not (math.isfinite(heartbeat_interval) and heartbeat_interval > 0):
            raise ValueError('heartbeat_interval must be a positive number '
                             'of seconds, got %r' % (heartbeat_interval,))
        if not (math.isfinite(timeout) and timeout > heartbeat_interval):
            raise ValueError(
                'timeout must be a number of seconds larger than '
                'heartbeat_interval (%r), got %r'
                % (heartbeat_interval, timeout))
        self.group = group
        self.heartbeat_interval = float(heartbeat_interval)
        self.timeout = float(timeout)
        self.dispatcher = NotificationDispatcher()
        #: This node's record while joined.
        self.member: Member | None = None
        #: The others as last seen, by name (never includes ``member``).
        self._view: dict[str, Member] = {}

    # -- listeners -------------------------------------------------------

    def register_listener(self, listener: object | None = None, *,
                          replay: bool = True, **handlers: Any
                          ) -> Registration:
        """Register a listener (see ``NotificationDispatcher.register``).

        With ``replay`` the listener is first told of every member already
        known, as join events, so it needs no separate initial read.
        """
        registration = self.dispatcher.register(listener, **handlers)
        if replay:
            for member in list(self._others()):
                self.dispatcher.deliver_to(registration, MembershipEvent(
                    EventKind.JOIN, member, self.now()))
        return registration

    def unregister_listener(self, registration: Registration) -> None:
        self.dispatcher.unregister(registration)

    def notify_neighbours_changed(self, kind: str,
                                  added: Iterable[PeerRef] = (),
                                  removed: Iterable[PeerRef] = ()) -> None:
        """Tell the listeners that neighbour set ``kind`` changed."""
        self.dispatcher.notify_neighbours_changed(kind, added, removed)

    # -- view ------------------------------------------------------------

    def _others(self) -> Iterable[Member]:
        """The other live members as this backend last saw them."""
        return self._view.values()

    def members(self) -> dict[str, Member]:
        """Every live member by name, this node included when joined."""
        view = {member.name: member for member in self._others()}
        if self.member is not None:
            view[self.member.name] = self.member
        return view

    def peers(self) -> list[PeerRef]:
        """The other live members, sorted by name."""
        return sorted((member.peer for member in self._others()),
                      key=lambda peer: peer.name)

    def _apply(self, kind: EventKind, member: Member,
               reason: LeaveReason | None = None) -> None:
        """Change the view and tell the listeners, on the owning thread.

        For backends that keep a view of their own (tooz): a join of a
        known member with a new record becomes an update, repeats and
        leaves of unknown members are dropped.
        """
        if self.member is not None and member.name == self.member.name:
            return
        if kind is EventKind.LEAVE:
            known = self._view.pop(member.name, None)
            if known is None:
                return
            member = known
        elif kind is EventKind.JOIN and member.name in self._view:
            if self._view[member.name] == member:
                return
            kind = EventKind.UPDATE
            self._view[member.name] = member
        else:
            if self._view.get(member.name) == member:
                return
            if kind is EventKind.UPDATE and member.name not in self._view:
                kind = EventKind.JOIN
            self._view[member.name] = member
        LOG.debug('Membership %(group)s: %(kind)s %(name)s',
                  {'group': self.group, 'kind': kind.value,
                   'name': member.name})
        self.dispatcher.post(MembershipEvent(kind, member, self.now(),
                                             reason))

    # -- backend ---------------------------------------------------------

    @abc.abstractmethod
    def now(self) -> float:
        """Seconds on the backend's clock (for event times)."""

    @abc.abstractmethod
    def start(self) -> None:
        """Connect to the backend; raise ``MembershipUnavailable`` if not."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Leave if joined, stop heartbeats and disconnect."""

    @abc.abstractmethod
    def join(self, member: Member) -> None:
        """Publish ``member`` as this node and start heartbeating."""

    @abc.abstractmethod
    def leave(self) -> None:
        """Withdraw this node; the others get a leave event."""

    @abc.abstractmethod
    def update_capabilities(self, capabilities: Mapping[str, Any]) -> None:
        """Replace this node's published capabilities."""

    @abc.abstractmethod
    def poll(self) -> None:
        """One round of heartbeat and detection, delivering its events."""

    @abc.abstractmethod
    async def run(self) -> None:
        """Drive heartbeats and detection until cancelled (supervised)."""


def load_membership(backend: str, **kwargs: Any) -> Membership:
    """Build the membership backend ``backend`` through stevedore.

    ``kwargs`` go to the backend's constructor (``ToozMembership`` takes
    ``url``; both take ``group``, ``heartbeat_interval`` and ``timeout``).
    """
    try:
        manager = stevedore.DriverManager(
            NAMESPACE, backend, invoke_on_load=True, invoke_kwds=kwargs)
    except stevedore.exception.NoMatches:
        names = sorted(stevedore.ExtensionManager(NAMESPACE).names())
        raise MembershipUnavailable(
            'no membership backend named %r; expected one of %s (entry '
            'points of %s)' % (backend, ', '.join(names), NAMESPACE)
        ) from None
    return manager.driver
