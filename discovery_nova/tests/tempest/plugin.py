"""The entry point tempest loads: where the tests are, which options."""

import os

from oslo_config import cfg
from tempest.test_discover import plugins

from discovery_nova.tests.tempest import config


class DiscoveryTempestPlugin(plugins.TempestPlugin):
    """discovery-nova's tests and options, for ``tempest run``."""

    def load_tests(self) -> tuple[str, str]:
        """This package, and the directory that holds ``discovery_nova``.

        The test ids then start with ``discovery_nova.tests.tempest``,
        which ``tempest run --regex discovery`` selects.
        """
        test_dir = os.path.dirname(os.path.abspath(__file__))
        top_level = os.path.dirname(os.path.dirname(os.path.dirname(
            test_dir)))
        return test_dir, top_level

    def register_opts(self, conf: cfg.ConfigOpts) -> None:
        conf.register_opt(config.service_option, group='service_available')
        conf.register_group(config.discovery_group)
        conf.register_opts(config.discovery_opts,
                           group=config.discovery_group)

    def get_opt_lists(self) -> list[tuple[str, list[cfg.Opt]]]:
        return config.list_opts()
