"""Options of the agent's aggregate publisher: how often, and as whom.

``discovery-agent`` writes this PoP's descriptor into its host aggregate
through the compute API (``discovery_nova.scheduler.aggregate_publisher``).
It authenticates as Nova's services authenticate to placement or neutron:
keystoneauth auth, session and adapter options in a group of their own,
here ``[discovery_aggregates]``. The publisher runs when ``auth_type`` is
set there and not otherwise.

The auth plugin's own options (``auth_url``, ``username``, ...) are
registered by keystoneauth when it loads the plugin named by ``auth_type``;
``list_opts`` lists those of the ``password`` plugin for the sample, as
nova does for ``[placement]``.
"""

from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

from discovery_nova.conf import groups

GROUP = 'discovery_aggregates'

aggregates_group = cfg.OptGroup(
    GROUP,
    title='PoP aggregate publisher',
    help="""
Credentials and pace of the overlay agent's publisher, which keeps this
PoP's host aggregate metadata (coordinate, error, tags, energy data,
measured RTTs) fresh through the compute API and adds this deployment's
nova-compute hosts to it. It is off unless ``auth_type`` is set here; the
credentials need the admin role (aggregates are an admin API).
""")

aggregates_opts = [
    cfg.FloatOpt(
        'publish_interval',
        default=60.0,
        min=1.0,
        help="""
Seconds between two publications of this PoP's aggregate.

Each publication lists the nova-compute services and the aggregates (two
GET requests) and writes only the metadata keys whose value changed; a
coordinate or RTT that moved by less than the publisher's thresholds is not
rewritten. The first publication comes one interval after the agent
started, so a restarted agent does not overwrite a settled coordinate with
the origin it starts from.

Possible values:

* A number of seconds, at least 1.

Related options:

* ``auth_type`` (the publisher runs only when it is set)
* ``[discovery_overlay] probe_interval``
"""),
    cfg.BoolOpt(
        'publish_other_pops',
        default=True,
        help="""
Whether the publisher also writes the aggregates of the other PoPs into
this deployment's Nova, from their overlay membership records (their
coordinate, error and tags, as each last published it).

The conductor ranks the PoPs it forwards builds to by the PoP aggregates
of its own deployment; with this option every live PoP the agent knows has
one, created without hosts. An aggregate that holds hosts of this
deployment belongs to a PoP whose own agent publishes it here, and is left
alone. Keys a record does not carry (measured RTTs, energy data, images)
are never written nor removed for another PoP.

Possible values:

* ``True``: write the aggregates of the other PoPs too.
* ``False``: write only this PoP's aggregate; another tool (or an admin)
  keeps those of the other PoPs.

Related options:

* ``publish_interval``
* ``[discovery_overlay] membership_url`` (where the records come from)
"""),
]

#: Version options of the adapter that the code decides (compute API 2.1
#: with microversions), not the operator; nova drops them likewise.
_ADAPTER_VERSION_OPTS = ('version', 'min_version', 'max_version')


def _unset(value: str) -> None:
    """Any value of a version option reads as unset."""
    return None


_UNSET_VERSION_OPTS = [cfg.Opt(name, type=_unset)
                       for name in _ADAPTER_VERSION_OPTS]


def _adapter_opts() -> list[cfg.Opt]:
    opts = [o for o in ks_loading.get_adapter_conf_options(
        include_deprecated=False) if o.dest not in _ADAPTER_VERSION_OPTS]
    cfg.set_defaults(opts, service_type='compute',
                     valid_interfaces=['internal', 'public'])
    return opts


def keystoneauth_opts() -> list[cfg.Opt]:
    """keystoneauth's options of the group, as the sample lists them."""
    return (ks_loading.get_session_conf_options() +
            ks_loading.get_auth_common_conf_options() +
            auth_plugin_opts() +
            _adapter_opts())


def auth_plugin_opts() -> list[cfg.Opt]:
    """The ``password`` plugin's options: registered only once
    keystoneauth loads the plugin that ``auth_type`` names."""
    return ks_loading.get_auth_plugin_conf_options('password')


def register_opts(conf: cfg.ConfigOpts) -> None:
    groups.register(conf, aggregates_group, aggregates_opts)
    ks_loading.register_session_conf_options(conf, GROUP)
    ks_loading.register_auth_conf_options(conf, GROUP)
    conf.register_opts(_adapter_opts(), group=GROUP)
    # keystoneauth's adapter loader reads the version options; they stay
    # unset (None) and out of the sample. The same Opt objects each time,
    # so registering on a conf twice (a test process does) is a no-op.
    conf.register_opts(_UNSET_VERSION_OPTS, group=GROUP)


def list_opts() -> dict:
    return {aggregates_group: aggregates_opts + keystoneauth_opts()}
