"""Options of ``discovery-conductor``: forwarding builds between PoPs.

They live on nova's ``ConfigOpts`` (``nova.conf.CONF``), so the conductor
reads them from the same nova.conf as the rest of the PoP.
"""

from oslo_config import cfg

from discovery_nova.conf import groups

conductor_group = cfg.OptGroup(
    'discovery_conductor',
    title='Decentralized conductor',
    help="""
How the conductor of this PoP talks to the conductors of the other PoPs:
where they meet (the federation transport and membership), how long a
forwarded build may take, and how the records of forwarded servers are kept
in step.
""")

conductor_opts = [
    cfg.StrOpt(
        'federation_transport_url',
        secret=True,
        help="""
oslo.messaging transport URL on which the conductors of all PoPs talk to
each other, conductor to conductor.

It is separate from ``[DEFAULT] transport_url`` so that every PoP keeps
its own message bus; only the conductors share this one.

Possible values:

* ``p2p://host1:port1,host2:port2/``: the brokerless driver, seeded with
  some conductors of the federation (recommended: no broker).
* ``rabbit://user:password@host:5672/vhost``: one RabbitMQ shared by the
  conductors.
* Unset: this PoP forwards nothing and accepts nothing (a lone PoP).

Related options:

* ``[discovery] pop_name``, ``membership_url``
"""),
    cfg.StrOpt(
        'membership_url',
        help="""
tooz URL of the membership group of the PoPs' conductors, through which a
conductor learns which PoPs are alive, where they are (coordinates, tags)
and when one dies.

Possible values:

* ``file:///path``: all conductors on one host, no server.
* ``redis://host:6379``, ``etcd3+http://host:2379``,
  ``zookeeper://host:2181``: a real deployment.
* Unset: use ``[discovery_overlay] membership_url``.

Related options:

* ``membership_group``, ``[discovery_overlay] membership_timeout``
"""),
    cfg.StrOpt(
        'membership_group',
        default='discovery-pops',
        help="""
Name of the membership group the conductors of one federation join.

Possible values:

* A string; federations sharing one backend use different names.
"""),
    cfg.FloatOpt(
        'forward_timeout',
        default=60.0,
        min=1.0,
        max=3600.0,
        help="""
Seconds to wait for one PoP to accept or decline a forwarded build before
it counts as declined ("no answer") and the next PoP is tried.

A PoP that is merely busy answers at once (see ``max_accepts_in_flight``),
so this is the time allowed to a PoP taking an offer, or to one that
vanished.

Possible values:

* A number of seconds from 1 to 3600.

Related options:

* ``max_forward_attempts``, ``forward_deadline``
"""),
    cfg.FloatOpt(
        'forward_deadline',
        default=600.0,
        min=10.0,
        max=86400.0,
        help="""
Seconds, from the moment this conductor received a build it forwards, after
which no PoP is offered it any more: the build fails with a fault listing
every PoP tried and its last answer.

Until then a PoP that answered "busy" is offered the build again when it
said to come back, so that a PoP with room is not given up for being slow.
A PoP that declined (no room) or did not answer within
``forward_timeout`` is not offered it again.

Possible values:

* A number of seconds from 10 to 86400.

Related options:

* ``forward_timeout``, ``max_forward_attempts``, ``max_accepts_in_flight``
"""),
    cfg.IntOpt(
        'forward_workers',
        default=8,
        min=1,
        max=256,
        help="""
Threads of this conductor that offer builds to other PoPs.

A build that must be forwarded is handed to these threads and the RPC
thread that received it returns at once, so that nova's RPC threads stay
free for the computes' calls to the conductor however long the other PoPs
take. A build waiting for a busy PoP holds none of them.

Possible values:

* A number from 1 to 256.

Related options:

* ``max_offers_per_pop``, ``[DEFAULT] executor_thread_pool_size``
"""),
    cfg.IntOpt(
        'max_offers_per_pop',
        default=2,
        min=1,
        max=64,
        help="""
Offers this conductor has in flight to any one other PoP at a time.

A build whose next PoP already has this many offers from here moves on to
the PoP after it, or waits (without holding a thread) if there is none.

Possible values:

* A number from 1 to 64.

Related options:

* ``forward_workers``, ``max_accepts_in_flight``
"""),
    cfg.IntOpt(
        'max_accepts_in_flight',
        default=2,
        min=1,
        max=64,
        help="""
Offers from other PoPs this conductor takes at a time (each one schedules
and starts a build here). Any further offer is answered "busy" at once,
with the time an offer has lately taken here as when to come back, instead
of queueing until its origin's ``forward_timeout``.

Possible values:

* A number from 1 to 64.

Related options:

* ``max_offers_per_pop``, ``forward_deadline``
"""),
    cfg.FloatOpt(
        'call_timeout',
        default=10.0,
        min=0.5,
        max=600.0,
        help="""
Seconds to wait for another PoP's answer to a short request: the state of
the servers running there, a delete, where a server should run. A PoP that
does not answer in time is asked again at the next sync pass.

Possible values:

* A number of seconds from 0.5 to 600.

Related options:

* ``sync_interval``, ``forward_timeout``
"""),
    cfg.IntOpt(
        'max_forward_attempts',
        default=4,
        min=0,
        max=64,
        help="""
How many other PoPs one build is offered to, nearest first, before it fails
with a fault listing every PoP tried.

Possible values:

* 0: never forward (each PoP is on its own).
* A positive number up to 64.

Related options:

* ``forward_timeout``
"""),
    cfg.FloatOpt(
        'sync_interval',
        default=3.0,
        min=0.2,
        max=600.0,
        help="""
Seconds between two passes that copy the state of servers running at other
PoPs into their records at this PoP, and carry deletions across.

Possible values:

* A number of seconds from 0.2 to 600.

Related options:

* ``building_poll_interval``
"""),
    cfg.FloatOpt(
        'building_poll_interval',
        default=0.1,
        min=0.02,
        max=10.0,
        help="""
Seconds between two looks at the state of servers that are still
building here for another PoP, while that PoP waits for them.

The origin of a forwarded server waits at the PoP running it (one long
poll per PoP, held at most a second) until the server is built or fails,
so it shows the server ACTIVE (or ERROR) about this long after it is, plus
the trip back, instead of at its next ``sync_interval`` pass. The PoP
running the servers looks at them at this interval, only while an origin
waits, and only at those servers.

Possible values:

* A number of seconds from 0.02 to 10.

Related options:

* ``sync_interval``, ``call_timeout``
"""),
    cfg.BoolOpt(
        'rebuild_on_pop_failure',
        default=True,
        help="""
Whether servers of a PoP that leaves the membership are built again at the
nearest healthy PoP that satisfies their hints.

Possible values:

* ``True``: rebuild the servers this PoP is responsible for (those it
  forwarded there, and those the dead PoP replicated to it).
* ``False``: only mark their records ERROR.
"""),
    cfg.DictOpt(
        'emulated_rtt_ms',
        default={},
        help="""
Test beds only: extra round-trip delay, in milliseconds, added to every
call to the named PoPs, so that several PoPs on one machine behave as if
they were far apart.

Possible values:

* A comma-separated list of ``pop:milliseconds``, e.g. ``fra1:12,nyc1:85``.
* Empty (the default): no delay is added.
"""),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    groups.register(conf, conductor_group, conductor_opts)


def list_opts() -> dict:
    return {conductor_group: conductor_opts}
