"""Options of the nova-scheduler filters and weighers of discovery-nova.

They live on the same ``ConfigOpts`` as Nova's (``oslo_config.cfg.CONF``,
which is ``nova.conf.CONF``), so nova-scheduler reads them from its own
configuration files: the filter modules import ``discovery_nova.conf``,
which registers them when nova-scheduler loads the filters.
"""

from oslo_config import cfg

from discovery_nova.conf import groups

scheduler_group = cfg.OptGroup(
    'discovery_scheduler',
    title='Locality-aware scheduling',
    help="""
How the discovery-nova filters and weighers of nova-scheduler read locality
hints (``near``, ``near_ip``, ``max_rtt_ms``, ``pop``, ``avoid_pop``,
``pop_tag``, ``same_pop_as``, ``different_pop_from``) and weigh hosts.
""")

scheduler_opts = [
    cfg.ListOpt(
        'client_prefixes',
        default=[],
        help="""
Client prefix table: which PoP serves a client address.

The ``near_ip=<address>`` hint is mapped to the PoP of the longest prefix
that holds the address; an address no prefix holds falls back to this
deployment's own PoP.

Possible values:

* A comma-separated list of ``CIDR=PoP`` entries, IPv4 and IPv6 mixed, e.g.
  ``192.0.2.0/24=par1,2001:db8::/32=fra2``.

Related options:

* ``[discovery] pop_name``
"""),
    cfg.FloatOpt(
        'rtt_error_weight',
        default=1.0,
        min=0.0,
        max=10.0,
        help="""
How much the coordinates' error estimate widens an RTT estimate.

``max_rtt_ms`` admits a PoP when ``estimate * (1 + weight * error)`` is
within the bound, where ``error`` combines the Vivaldi error estimates of
both ends. 0 trusts the estimate blindly; larger values admit only PoPs
that are surely within the bound.

Possible values:

* A number from 0 to 10.

Related options:

* ``max_trusted_error``
"""),
    cfg.FloatOpt(
        'max_trusted_error',
        default=1.0,
        min=0.0,
        help="""
Combined relative error above which an RTT estimate is not trusted at all.

A PoP whose estimate to the reference point is this uncertain never passes
``max_rtt_ms``, whatever the estimate says (a fresh coordinate starts with
error 1.0 per end, about 1.41 combined).

Possible values:

* A number >= 0.

Related options:

* ``rtt_error_weight``
"""),
    cfg.IntOpt(
        'pop_refresh_interval',
        default=10,
        min=0,
        help="""
Seconds the scheduler reuses the PoP directory read from aggregates.

The directory (every PoP aggregate: name, coordinates, tags, energy, hosts)
is read from the Nova API database; within this interval requests reuse the
last read. 0 reads it for every request.

Possible values:

* 0 or a number of seconds.

Related options:

* None
"""),
    cfg.FloatOpt(
        'proximity_weight_multiplier',
        default=100.0,
        help="""
Multiplier of the proximity weigher (nearest PoP to the reference point).

Proximity is weighed on a log scale of the estimated RTT: after Nova's
normalisation, another weigher of multiplier ``m`` can outweigh a relative
RTT difference of at most ``exp(m * R / multiplier) - 1``, where ``R`` is
``ln(1 + largest RTT)`` among the candidates (about 5.7 for 300 ms). With
the default, RAM spreading (``m`` = 1) decides only between PoPs less than
about 6 % apart, and always between hosts of one PoP. Can be overridden per
aggregate with the metadata key of the same name.

Possible values:

* A number; negative values prefer far hosts.

Related options:

* ``[filter_scheduler] ram_weight_multiplier``
"""),
    cfg.FloatOpt(
        'image_locality_weight_multiplier',
        default=1.0,
        help="""
Multiplier of the image locality weigher.

Hosts that run a server of the requested image (its image is in their cache)
and PoPs that hold it are preferred, in proportion to the bytes that need
not be moved. Can be overridden per aggregate with the metadata key of the
same name.

Possible values:

* A number; 0 disables the weigher.

Related options:

* None
"""),
    cfg.FloatOpt(
        'energy_weight_multiplier',
        default=1.0,
        help="""
Multiplier of the energy weigher.

Hosts of PoPs that draw less non-renewable energy per unit of IT energy
(``PUE * (1 - renewable share)``) are preferred. Can be overridden per
aggregate with the metadata key of the same name.

Possible values:

* A number; 0 disables the weigher.

Related options:

* ``default_pue``
"""),
    cfg.FloatOpt(
        'default_pue',
        default=1.5,
        min=1.0,
        help="""
Power usage effectiveness assumed for a PoP that publishes none.

Possible values:

* A number >= 1.0.

Related options:

* ``energy_weight_multiplier``
"""),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    groups.register(conf, scheduler_group, scheduler_opts)


def list_opts() -> dict:
    return {scheduler_group: scheduler_opts}
