"""The openstackclient plugin interface of the discovery commands.

openstackclient finds this module through the ``openstack.cli.extension``
entry point ``discovery``, adds ``--os-discovery-api-version`` to its
global options and loads the commands of ``openstack.discovery.v<major>``.
``make_client`` is called on first use of ``client_manager.discovery``,
after authentication, so the client shares openstackclient's session.
"""

import argparse

from osc_lib import exceptions
from osc_lib import utils
from oslo_utils import importutils

DEFAULT_API_VERSION = '1'

API_NAME = 'discovery'
API_VERSION_OPTION = 'os_discovery_api_version'
API_VERSIONS = {
    '1': 'discovery_nova.osc.client.Client',
}


def make_client(instance):
    """The discovery client of an openstackclient ClientManager.

    :param instance: the ClientManager; its session, region and interface
        are the ones given on the command line or in clouds.yaml.
    """
    version = str(instance._api_version[API_NAME])
    try:
        path = API_VERSIONS[version]
    except KeyError:
        raise exceptions.CommandError(
            'discovery API version %r is not supported: expected one of %s '
            '(--os-discovery-api-version or OS_DISCOVERY_API_VERSION)'
            % (version, ', '.join(sorted(API_VERSIONS)))) from None
    client_class = importutils.import_class(path)
    return client_class(session=instance.session,
                        region_name=instance.region_name,
                        interface=instance.interface)


def build_option_parser(
        parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the plugin's global options to openstackclient's parser."""
    parser.add_argument(
        '--os-discovery-api-version',
        metavar='<discovery-api-version>',
        default=utils.env('OS_DISCOVERY_API_VERSION',
                          default=DEFAULT_API_VERSION),
        help='discovery API version, default=%s '
             '(Env: OS_DISCOVERY_API_VERSION)' % DEFAULT_API_VERSION)
    return parser
