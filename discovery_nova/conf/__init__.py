"""Configuration of discovery-nova, one module per area.

``register_opts`` puts every option of this project on a ``ConfigOpts``;
``discovery_nova.conf.opts.list_opts`` lists them for the config generator.
"""

from oslo_config import cfg

from discovery_nova.conf import aggregates
from discovery_nova.conf import conductor
from discovery_nova.conf import discovery
from discovery_nova.conf import messaging
from discovery_nova.conf import overlay
from discovery_nova.conf import scheduler

CONF = cfg.CONF

_MODULES = (discovery, overlay, scheduler, conductor, messaging, aggregates)


def register_opts(conf: cfg.ConfigOpts) -> None:
    for module in _MODULES:
        module.register_opts(conf)


register_opts(CONF)


def validate(conf: cfg.ConfigOpts) -> None:
    """Read every option of this project once so a bad value fails now.

    oslo.config checks a value's type and bounds only when it is read; a
    service calls this right after parsing its configuration so that an
    out-of-range value stops it at start-up with oslo.config's error naming
    the option, instead of at the first use hours later.
    """
    from discovery_nova.conf import opts

    for group, group_opts in opts.list_opts():
        name = getattr(group, 'name', group)
        section = conf if name in (None, 'DEFAULT') else conf[name]
        for opt in group_opts:
            # An auth plugin's options (``[discovery_aggregates]
            # username``...) exist once keystoneauth loads the plugin,
            # which checks them then.
            if opt.dest in section:
                getattr(section, opt.dest)
