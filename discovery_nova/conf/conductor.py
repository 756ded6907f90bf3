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

Possible values:

* A number of seconds from 1 to 3600.

Related options:

* ``max_forward_attempts``
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
