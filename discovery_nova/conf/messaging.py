"""Options of the brokerless ``p2p://`` oslo.messaging driver.

Following oslo.messaging's convention, the driver registers this group on
the ``ConfigOpts`` it is given (``P2PDriver.__init__``); ``register_opts``
and ``list_opts`` exist so the project-wide option listing and the config
generator see the same options.
"""

from oslo_config import cfg

from discovery_nova.conf import groups

GROUP = 'oslo_messaging_p2p'
_GROUP_TITLE = 'Brokerless peer-to-peer messaging'
_GROUP_HELP = """
The ``p2p://host1:port1,host2:port2/`` oslo.messaging transport: every
service process is a peer; the hosts in the URL are the peers to bootstrap
from. There is no broker: peers keep the directory of who serves which
topic among themselves and authenticate every connection.
"""


p2p_group = cfg.OptGroup(GROUP, title=_GROUP_TITLE, help=_GROUP_HELP)

network_opts = [
    cfg.HostAddressOpt(
        'listen_host',
        default='0.0.0.0',
        help="""
Address this peer listens on when it does not take over one of the seed
addresses of the transport URL.

Possible values:

* An IPv4 or IPv6 address or a host name.

Related options:

* ``listen_port``, ``advertise_host``, ``bind_seed``
"""),
    cfg.PortOpt(
        'listen_port',
        default=0,
        help="""
Port this peer listens on when it does not take over a seed address. ``0``
lets the kernel choose; the chosen port is published in the directory.

Possible values:

* ``0`` or a port number from 1 to 65535.

Related options:

* ``listen_host``
"""),
    cfg.HostAddressOpt(
        'advertise_host',
        help="""
Address other peers use to reach this one, published in the directory.

Possible values:

* An address or host name; unset means the listening address, or this
  host's name when listening on a wildcard address.

Related options:

* ``listen_host``
"""),
    cfg.BoolOpt(
        'bind_seed',
        default=True,
        help="""
Whether this peer listens on the first seed address of the transport URL
that it can bind (a seed on this host whose port is free). The first peer
started on a seed host becomes that seed; when it dies, the next peer to
start there takes its place.

Possible values:

* ``True`` or ``False``.

Related options:

* ``listen_host``, ``listen_port``
"""),
    cfg.IntOpt(
        'max_connections',
        default=32,
        min=1,
        max=4096,
        help="""
Bound on the open connections of one peer. A message to a peer that is not
directly connected, when the bound is reached and no idle connection can be
closed, is relayed through a connected peer. The links to the peer's ring
neighbours (up to two successors and two predecessors, which watch each
other's liveness) are never closed for being idle and count in the bound;
with a bound under 4 a peer watches fewer.

Possible values:

* An integer from 1 to 4096.

Related options:

* ``min_neighbours``, ``max_hops``
"""),
    cfg.IntOpt(
        'min_neighbours',
        default=3,
        min=1,
        max=64,
        help="""
Number of connections a peer keeps open even without traffic, so that the
directory keeps flowing when a seed dies.

Possible values:

* An integer from 1 to 64, at most ``max_connections``.

Related options:

* ``max_connections``
"""),
    cfg.IntOpt(
        'max_hops',
        default=8,
        min=1,
        max=64,
        help="""
Bound on the relays one message may take; a message over it is dropped and
counted.

Possible values:

* An integer from 1 to 64.
"""),
    cfg.FloatOpt(
        'connect_timeout',
        default=3.0,
        min=0.05,
        max=120.0,
        help="""
Seconds to open a connection and finish its authentication handshake. A
peer that connects and then says nothing (a half-open connection) is closed
after it and counted.

Possible values:

* A number of seconds from 0.05 to 120.
"""),
    cfg.FloatOpt(
        'idle_timeout',
        default=30.0,
        min=0.5,
        max=3600.0,
        help="""
Seconds without a frame after which an established connection is closed:
a connection nobody uses (it is opened again on demand), or a half-open
one. The connections between ring neighbours carry a keepalive every
``heartbeat_interval`` and are never idle that long.

Possible values:

* A number of seconds from 0.5 to 3600, well above
  ``heartbeat_interval``.

Related options:

* ``heartbeat_interval``
"""),
    cfg.IntOpt(
        'max_message_bytes',
        default=16777216,
        min=1024,
        max=268435456,
        help="""
Largest frame a peer accepts. A larger frame is refused, its connection
closed and the event counted.

Possible values:

* A number of bytes from 1024 to 268435456.
"""),
]

security_opts = [
    cfg.StrOpt(
        'auth_mode',
        default='hmac',
        choices=[('hmac', 'every connection runs an HMAC-SHA256 '
                          'challenge-response on the deployment key and '
                          'MACs every frame'),
                 ('tls', 'mutual TLS with certificates of the deployment '
                         'CA, plus the deployment-key handshake inside')],
        help="""
How peers authenticate each other.

Possible values:

* ``hmac`` or ``tls``.

Related options:

* ``deployment_key``, ``ssl_ca_file``, ``ssl_cert_file``, ``ssl_key_file``
"""),
    cfg.StrOpt(
        'deployment_key',
        secret=True,
        help="""
Shared secret of the deployment. A peer without it can neither join nor
inject a message.

Possible values:

* A string of at least 16 characters, the same on every peer.

Related options:

* ``deployment_key_file``
"""),
    cfg.StrOpt(
        'deployment_key_file',
        help="""
File holding the deployment key, used when ``deployment_key`` is unset.
Leading and trailing white space is stripped.

Possible values:

* Path of a file readable by the service.

Related options:

* ``deployment_key``
"""),
    cfg.StrOpt(
        'ssl_ca_file',
        help="""
CA certificate of the deployment (``auth_mode = tls``): peers accept only
certificates it signed.

Possible values:

* Path of a PEM file.

Related options:

* ``auth_mode``, ``ssl_cert_file``, ``ssl_key_file``
"""),
    cfg.StrOpt(
        'ssl_cert_file',
        help="""
Certificate of this peer (``auth_mode = tls``), signed by the deployment CA.

Possible values:

* Path of a PEM file.

Related options:

* ``ssl_key_file``, ``ssl_ca_file``
"""),
    cfg.StrOpt(
        'ssl_key_file',
        secret=True,
        help="""
Private key of ``ssl_cert_file``.

Possible values:

* Path of a PEM file.

Related options:

* ``ssl_cert_file``
"""),
]

directory_opts = [
    cfg.FloatOpt(
        'heartbeat_interval',
        default=1.0,
        min=0.05,
        max=60.0,
        help="""
Seconds between two keepalives on the connections of a peer to its ring
neighbours. A keepalive carries a digest of the peer's directory, so
neighbours that missed a change notice it; changes themselves are sent as
they happen.

Possible values:

* A number of seconds from 0.05 to 60.

Related options:

* ``registration_ttl``
"""),
    cfg.FloatOpt(
        'registration_ttl',
        default=15.0,
        min=0.2,
        max=3600.0,
        help="""
Seconds a peer's ring predecessors wait without hearing from it (a crash,
a hung process, a partition) before they declare it dead; its
registrations are then withdrawn everywhere. A peer that stops cleanly
withdraws them at once.

Possible values:

* A number of seconds from 0.2 to 3600, several ``heartbeat_interval``
  long, so that a late keepalive is not taken for a death.

Related options:

* ``heartbeat_interval``
"""),
    cfg.FloatOpt(
        'undelivered_hold',
        default=5.0,
        min=0.0,
        max=600.0,
        help="""
Seconds a cast is held when nobody serves its target yet (a server that is
starting up); a call is held up to its own timeout instead.

Possible values:

* A number of seconds from 0 to 600.
"""),
    cfg.IntOpt(
        'notification_backlog',
        default=10000,
        min=0,
        max=10000000,
        help="""
Notifications a peer keeps for a topic nobody listens to yet, delivered
when a listener appears; beyond it the oldest are dropped and counted.

Possible values:

* An integer from 0 to 10000000.
"""),
]

ALL_OPTS = network_opts + security_opts + directory_opts


def register_opts(conf: cfg.ConfigOpts) -> None:
    groups.register(conf, p2p_group, ALL_OPTS)


def list_opts() -> dict:
    return {p2p_group: ALL_OPTS}
