"""Options of the tempest plugin: the ``[discovery]`` group of tempest.conf.

They are registered on tempest's own configuration (``tempest.config.CONF``)
by ``DiscoveryTempestPlugin.register_opts``, next to the
``[service_available] discovery`` switch that turns the tests off on clouds
without discovery-nova.
"""

from oslo_config import cfg

service_option = cfg.BoolOpt(
    'discovery',
    default=True,
    help="""
Whether the compute PoPs of the cloud run discovery-nova.

When false, every test of the discovery tempest plugin is skipped.
""")

discovery_group = cfg.OptGroup(
    'discovery',
    title='discovery-nova PoPs',
    help="""
The PoPs (points of presence) the discovery-nova tests use. Each PoP is a
small Nova deployment and a keystone region of the same name; unset options
are read at test time from the PoP aggregates of the entry PoP's nova,
which needs admin credentials.
""")

discovery_opts = [
    cfg.ListOpt(
        'pops',
        default=[],
        help="""
Names of the PoPs (keystone regions) the tests may expect servers at.

Possible values:

* A comma-separated list of region names, e.g. ``par1,fra2,lon1``.
* Empty (the default): every PoP the entry PoP's nova knows (its host
  aggregates with a ``discovery_pop`` metadata key).

Related options:

* ``[discovery] entry_pop``, which must be one of them.
"""),
    cfg.StrOpt(
        'entry_pop',
        help="""
The PoP the tests send their requests to.

Possible values:

* A region name.
* Unset: ``[compute] region``, else ``[identity] region``.

Related options:

* ``[discovery] far_pop``
"""),
    cfg.StrOpt(
        'far_pop',
        help="""
The PoP the locality hint tests ask for with ``near=<PoP>``.

Possible values:

* A region name other than the entry PoP.
* Unset: the PoP farthest from the entry PoP by the coordinates in its
  aggregates (the last one the scheduler would try).

Related options:

* ``[discovery] pops``
"""),
    cfg.IntOpt(
        'forward_timeout',
        default=300,
        min=1,
        help="""
Seconds to wait for a change made at the entry PoP to show at another PoP.

A server deleted at its origin PoP is deleted where it runs by the
conductors, asynchronously; the tests wait this long for it to go.

Possible values:

* A whole number of seconds, at least 1.
"""),
    cfg.IntOpt(
        'overflow_max_servers',
        default=32,
        min=1,
        help="""
Most servers the overflow scenario boots to fill the entry PoP.

The scenario reads the entry PoP's free capacity from placement and fills
it with ``[compute] flavor_ref`` servers before booting the one that must
overflow; when more would be needed than this, the scenario is skipped
rather than load a large PoP.

Possible values:

* A whole number, at least 1. The project's instance and core quotas must
  allow one server more than the entry PoP holds.

Related options:

* ``[compute] flavor_ref``
"""),
]


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """The options by group, for tempest's sample configuration."""
    return [(discovery_group.name, discovery_opts),
            ('service_available', [service_option])]
