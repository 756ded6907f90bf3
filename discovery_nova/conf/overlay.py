"""Options of the locality overlay: coordinates, search, routing, membership.

The overlay itself never reads ``CONF``: the agent turns these options into
the plain parameter objects the overlay classes take, so the simulator can
build the very same classes without any configuration file.
"""

from oslo_config import cfg

from discovery_nova.conf import groups

overlay_group = cfg.OptGroup(
    'discovery_overlay',
    title='Locality overlay',
    help="""
The overlay agent of this PoP: how it listens, how it measures round-trip
times, how it searches for its nearest peers, routes, and tracks membership.
""")

agent_opts = [
    cfg.HostAddressOpt(
        'listen_host',
        default='0.0.0.0',
        help="""
Address the overlay agent listens on, for both its message port (TCP) and its
probe port (UDP).

Possible values:

* An IPv4 or IPv6 address or a host name.

Related options:

* ``listen_port``, ``advertise_host``
"""),
    cfg.PortOpt(
        'listen_port',
        default=7390,
        help="""
Port of the overlay agent. TCP carries overlay messages; UDP on the same
number answers round-trip probes.

Possible values:

* A port number from 1 to 65535.

Related options:

* ``listen_host``
"""),
    cfg.HostAddressOpt(
        'advertise_host',
        help="""
Address other agents use to reach this one, published in membership.

Possible values:

* An address or host name; unset means ``listen_host``, or the host's
  name when ``listen_host`` is a wildcard address.

Related options:

* ``listen_host``
"""),
    cfg.StrOpt(
        'deployment_key',
        secret=True,
        help="""
Shared secret of the whole deployment. Every overlay message and probe
carries an HMAC-SHA256 made with it; anything that fails the check is
dropped and counted.

Possible values:

* A string of at least 16 characters, the same on every PoP.

Related options:

* ``deployment_key_file``
"""),
    cfg.StrOpt(
        'deployment_key_file',
        help="""
File holding the shared deployment key, used when ``deployment_key`` is
unset. Leading and trailing white space is stripped.

Possible values:

* Path of a file readable by the agent.

Related options:

* ``deployment_key``
"""),
    cfg.IntOpt(
        'max_message_bytes',
        default=1048576,
        min=1024,
        max=67108864,
        help="""
Largest overlay message the agent accepts. A larger frame is refused, the
connection closed and the event counted.

Possible values:

* A number of bytes from 1024 to 67108864.
"""),
    cfg.FloatOpt(
        'request_timeout',
        default=5.0,
        min=0.05,
        max=300.0,
        help="""
Seconds an agent waits for the answer to an overlay request (a spiral search,
a routed lookup) before it gives up and reports the peer unreachable.

Possible values:

* A number of seconds from 0.05 to 300.
"""),
]

coordinates_opts = [
    cfg.StrOpt(
        'prober',
        default='udp',
        help="""
How round-trip times to other agents are measured.

Possible values:

* ``udp``: authenticated UDP echo between agents.
* ``matrix``: read from an RTT matrix (simulation only).
* Any other name in the ``discovery_nova.overlay.probers`` entry-point
  namespace.

Related options:

* ``probe_interval``, ``probe_timeout``
"""),
    cfg.FloatOpt(
        'probe_interval',
        default=1.0,
        min=0.01,
        max=3600.0,
        help="""
Seconds between two round-trip probes of this agent. Each probe feeds one
sample to the Vivaldi coordinates.

Possible values:

* A number of seconds from 0.01 to 3600.
"""),
    cfg.FloatOpt(
        'probe_timeout',
        default=2.0,
        min=0.01,
        max=60.0,
        help="""
Seconds after which an unanswered probe counts as lost.

Possible values:

* A number of seconds from 0.01 to 60.
"""),
    cfg.FloatOpt(
        'max_rtt_ms',
        default=10000.0,
        min=1.0,
        max=600000.0,
        help="""
Largest round-trip time, in milliseconds, taken as a real sample. Larger,
negative and non-finite samples are rejected and counted instead of moving
the coordinates.

Possible values:

* A number of milliseconds from 1 to 600000.
"""),
    cfg.IntOpt(
        'vivaldi_dimensions',
        default=3,
        min=1,
        max=16,
        help="""
Number of Euclidean dimensions of the Vivaldi coordinates (a height is always
added on top of them).

Possible values:

* An integer from 1 to 16.
"""),
    cfg.FloatOpt(
        'vivaldi_cc',
        default=0.25,
        min=0.001,
        max=1.0,
        help="""
Vivaldi's timestep constant ``cc``: how far one sample moves the coordinates,
scaled by the confidence of both ends.

Possible values:

* A number from 0.001 to 1.

Related options:

* ``vivaldi_ce``
"""),
    cfg.FloatOpt(
        'vivaldi_ce',
        default=0.25,
        min=0.001,
        max=1.0,
        help="""
Vivaldi's error constant ``ce``: how fast the per-node error estimate follows
the error of new samples.

Possible values:

* A number from 0.001 to 1.

Related options:

* ``vivaldi_cc``
"""),
    cfg.IntOpt(
        'vivaldi_neighbours',
        default=32,
        min=2,
        max=1024,
        help="""
How many peers this agent keeps probing: about half the nearest known ones,
half chosen at random, so that coordinates are right both near and far.

Possible values:

* An integer from 2 to 1024.
"""),
]

spiral_opts = [
    cfg.IntOpt(
        'near_set_size',
        default=16,
        min=1,
        max=1024,
        help="""
How many nearest peers each agent keeps in its near set, the list the spiral
search walks and improves as searches pass by.

Possible values:

* An integer from 1 to 1024.

Related options:

* ``long_links``, ``spiral_k``
"""),
    cfg.IntOpt(
        'long_links',
        default=4,
        min=0,
        max=256,
        help="""
How many far, random peers each agent keeps beside its near set, so that a
spiral search cannot get stuck in one region.

Possible values:

* An integer from 0 to 256.
"""),
    cfg.IntOpt(
        'spiral_k',
        default=10,
        min=1,
        max=1024,
        help="""
How many nearest peers a spiral search gathers when the agent refreshes its
own neighbourhood.

Possible values:

* An integer from 1 to 1024.

Related options:

* ``near_set_size``, ``spiral_refresh_interval``
"""),
    cfg.FloatOpt(
        'spiral_refresh_interval',
        default=30.0,
        min=0.1,
        max=86400.0,
        help="""
Seconds between two spiral searches by which an agent refreshes its nearest
peers; a change notifies the neighbour-change listeners.

Possible values:

* A number of seconds from 0.1 to 86400.
"""),
    cfg.IntOpt(
        'spiral_max_hops',
        default=64,
        min=1,
        max=4096,
        help="""
Bound on the hops of one spiral search; a search that reaches it returns what
it has gathered.

Possible values:

* An integer from 1 to 4096.
"""),
]

routing_opts = [
    cfg.IntOpt(
        'ring_successors',
        default=4,
        min=1,
        max=64,
        help="""
Length of the successor list each agent keeps on the identifier ring. More
successors survive more simultaneous failures.

Possible values:

* An integer from 1 to 64.
"""),
    cfg.IntOpt(
        'ring_bucket_size',
        default=2,
        min=1,
        max=64,
        help="""
Learned shortcuts kept per distance class (``[2^i, 2^(i+1))`` around the
ring). Shortcuts are learned from the requests an agent carries, so routing
falls from linear towards logarithmic hops as traffic flows.

Possible values:

* An integer from 1 to 64.
"""),
    cfg.IntOpt(
        'ring_max_hops',
        default=256,
        min=1,
        max=65536,
        help="""
Bound on the hops of one routed request; a request over it fails with an
error naming the key.

Possible values:

* An integer from 1 to 65536.
"""),
]

membership_opts = [
    cfg.StrOpt(
        'membership_backend',
        default='tooz',
        help="""
Which membership backend tracks the agents of the deployment.

Possible values:

* ``tooz``: group membership through a tooz coordination backend.
* ``local``: in-process only (simulation and tests).
* Any other name in the ``discovery_nova.overlay.membership`` namespace.

Related options:

* ``membership_url``
"""),
    cfg.StrOpt(
        'membership_url',
        default='file://$state_path/membership',
        help="""
tooz backend URL for membership. The default, a directory, needs no server
but only works for agents on one host; real deployments use a server.

Possible values:

* ``file:///path``: agents on one host, no server.
* ``redis://host:6379``: Redis.
* ``etcd3+http://host:2379``: etcd v3.
* ``zookeeper://host:2181``: ZooKeeper.

Related options:

* ``membership_backend``, ``membership_group``, ``state_path``
"""),
    cfg.StrOpt(
        'membership_group',
        default='discovery-overlay',
        help="""
Name of the membership group all agents of one deployment join.

Possible values:

* A string; deployments sharing one backend use different names.
"""),
    cfg.FloatOpt(
        'membership_heartbeat_interval',
        default=1.0,
        min=0.05,
        max=600.0,
        help="""
Seconds between two membership heartbeats of this agent, and between two
checks for joins and leaves.

Possible values:

* A number of seconds from 0.05 to 600.

Related options:

* ``membership_timeout``
"""),
    cfg.FloatOpt(
        'membership_timeout',
        default=10.0,
        min=0.1,
        max=3600.0,
        help="""
Seconds without a heartbeat after which a member counts as gone and the
leave listeners are told.

Possible values:

* A number of seconds from 0.1 to 3600, larger than
  ``membership_heartbeat_interval``.

Related options:

* ``membership_heartbeat_interval``
"""),
    cfg.StrOpt(
        'state_path',
        default='/var/lib/discovery-nova',
        help="""
Directory where the agent keeps its state (the default file membership
backend lives below it).

Possible values:

* A directory path writable by the agent.
"""),
]

supervision_opts = [
    cfg.FloatOpt(
        'restart_backoff',
        default=0.5,
        min=0.0,
        max=600.0,
        help="""
Seconds before a failed overlay service (prober, membership, search) is
restarted; the delay doubles on each consecutive failure up to
``restart_backoff_max``.

Possible values:

* A number of seconds from 0 to 600.

Related options:

* ``restart_backoff_max``
"""),
    cfg.FloatOpt(
        'restart_backoff_max',
        default=30.0,
        min=0.0,
        max=3600.0,
        help="""
Longest delay between two restarts of a failing overlay service.

Possible values:

* A number of seconds from 0 to 3600.

Related options:

* ``restart_backoff``
"""),
]

client_probe_opts = [
    cfg.ListOpt(
        'client_probes',
        default=[],
        help="""
Probe targets of client prefixes: where the agent measures its RTT to the
clients of a prefix, by the time a TCP connection to the target takes.

The agent probes the prefixes of ``[discovery_scheduler] client_prefixes``
that map to its own PoP or to one of its ``client_probe_pops`` nearest
PoPs and have a target here, and publishes the smoothed RTTs in its PoP
aggregate (``discovery_client_rtt:<CIDR>``), where a ``near_ip`` request
of that prefix finds them. A target should be a host inside the prefix
that accepts TCP connections on that port (a resolver, a web server, a
customer edge router); the agent only connects and closes, and needs no
privileges. A target that cannot be reached is logged once and publishes
nothing for its prefix. Prefixes without a target are ranked by the
coordinates of the PoP they map to, as before.

Possible values:

* A comma-separated list of ``CIDR=host:port`` entries, each CIDR exactly
  one of ``[discovery_scheduler] client_prefixes``, an IPv6 host in
  brackets, e.g.
  ``192.0.2.0/24=192.0.2.53:53,2001:db8::/32=[2001:db8::80]:443``.
* Empty (the default): client prefixes are not probed.

Related options:

* ``[discovery_scheduler] client_prefixes``
* ``client_probe_pops``, ``client_probe_limit``, ``client_probe_interval``
* ``probe_timeout``
"""),
    cfg.IntOpt(
        'client_probe_pops',
        default=8,
        min=0,
        max=64,
        help="""
Of how many of its nearest PoPs (the overlay's near set) the agent also
probes the client prefixes, besides those of its own PoP.

When the PoP a client's prefix maps to is full, the scheduler looks for
the next nearest PoP to the client; the PoPs around it measure the prefix
for that. 0 probes only the prefixes of the agent's own PoP.

Possible values:

* An integer from 0 to 64.

Related options:

* ``client_probes``, ``client_probe_limit``
"""),
    cfg.IntOpt(
        'client_probe_limit',
        default=64,
        min=1,
        max=256,
        help="""
Most client prefixes one agent probes and publishes (one aggregate metadata
key each): those of its own PoP first, then those of its nearest PoPs,
nearest first.

Possible values:

* An integer from 1 to 256.

Related options:

* ``client_probe_pops``
"""),
    cfg.FloatOpt(
        'client_probe_interval',
        default=30.0,
        min=1.0,
        max=3600.0,
        help="""
Seconds between two probes of the same client prefix. The published RTT is
the median of the last five samples; one not refreshed by a sample for
five intervals is withdrawn.

Possible values:

* A number of seconds from 1 to 3600.

Related options:

* ``client_probes``, ``probe_timeout``
"""),
]

ALL_OPTS = (agent_opts + coordinates_opts + spiral_opts + routing_opts +
            membership_opts + supervision_opts + client_probe_opts)


def register_opts(conf: cfg.ConfigOpts) -> None:
    groups.register(conf, overlay_group, ALL_OPTS)


def list_opts() -> dict:
    return {overlay_group: ALL_OPTS}
