"""Configuration of discovery-nova, one module per area.

``register_opts`` puts every option of this project on a ``ConfigOpts``;
``discovery_nova.conf.opts.list_opts`` lists them for the config generator.
"""

from oslo_config import cfg

from discovery_nova.conf import discovery
from discovery_nova.conf import overlay

CONF = cfg.CONF

_MODULES = (discovery, overlay)


def register_opts(conf: cfg.ConfigOpts) -> None:
    for module in _MODULES:
        module.register_opts(conf)


register_opts(CONF)
