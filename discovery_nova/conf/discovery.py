"""Options that say which PoP this is: its identity and where it sits."""

from oslo_config import cfg

from discovery_nova.conf import groups

discovery_group = cfg.OptGroup(
    'discovery',
    title='PoP identity',
    help="""
Identity of this point of presence (PoP): the name the other PoPs know it by
and the tags that describe where it is.
""")

discovery_opts = [
    cfg.StrOpt(
        'pop_name',
        regex=r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$',
        help="""
Name of this point of presence.

Every service of one PoP (overlay agent, conductor, scheduler plugins) uses
the same name; it is this PoP's member id in the overlay, its ring identifier
is derived from it, and the scheduler matches it against the ``pop`` metadata
of host aggregates.

Possible values:

* A short name of letters, digits, ``-``, ``_`` and ``.``, starting with a
  letter or digit, at most 63 characters. Unset means "use the host name"
  (shortened to the first label).

Related options:

* ``[discovery] pop_tags``
"""),
    cfg.ListOpt(
        'pop_tags',
        default=[],
        help="""
Tags describing this PoP, such as its country or jurisdiction.

Possible values:

* A comma-separated list of ``key:value`` or plain tags, e.g.
  ``country:FR,renewable``.

Related options:

* ``[discovery] pop_name``
"""),
    cfg.FloatOpt(
        'pop_renewable_share',
        min=0.0,
        max=1.0,
        help="""
Share of this PoP's power that comes from renewable sources.

The overlay agent publishes it in the PoP's aggregate
(``discovery_renewable_share``), where the energy weigher of
nova-scheduler reads it. Unset, the agent leaves that key alone, so it can
also be set by hand or by another tool with ``openstack aggregate set``.

Possible values:

* A number from 0 to 1, e.g. ``0.8``; unset means "not published by the
  agent".

Related options:

* ``[discovery] pop_pue``
* ``[discovery_aggregates] auth_type`` (the agent publishes only when set)
"""),
    cfg.FloatOpt(
        'pop_pue',
        min=1.0,
        help="""
Power usage effectiveness of this PoP: facility energy over IT energy.

Published by the overlay agent in the PoP's aggregate (``discovery_pue``)
for the energy weigher, as ``pop_renewable_share`` is. Unset, the agent
leaves that key alone.

Possible values:

* A number >= 1, e.g. ``1.25``; unset means "not published by the agent".

Related options:

* ``[discovery] pop_renewable_share``
* ``[discovery_scheduler] default_pue`` (what the weigher assumes for a
  PoP that publishes none)
"""),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    groups.register(conf, discovery_group, discovery_opts)


def list_opts() -> dict:
    return {discovery_group: discovery_opts}
