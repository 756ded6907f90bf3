"""``openstack discovery server locate``: where a server runs."""

from osc_lib.command import command

from discovery_nova.osc import columns
from discovery_nova.osc import locate


class LocateServer(command.ShowOne):
    """Find the PoP a server runs at, and the path that found it.

    A server ID is looked up first on the overlay's ring through the
    current region's overlay agent (the record every PoP keeps of its
    servers says where each runs; the route of the lookup is shown), then
    asked of that region. Without a record (or an agent, or given a name)
    the regions are searched, and "method" says so: the current region
    (--os-region-name) is asked first. A server it
    forwarded to another PoP (metadata discovery_pop) is followed to that
    PoP's region; a server it does not know is looked for in the other
    regions, nearest PoP first (by estimated RTT, when the host aggregates
    can be read: that needs the admin role by default policy; otherwise in
    name order). The host is shown only to admins.
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>',
                            help='server to locate (name or ID)')
        parser.add_argument(
            '--overlay-agent', metavar='<host:port>',
            help='overlay agent of the current region (default: '
                 '%s of the region in clouds.yaml)' % locate.CONFIG_AGENT)
        parser.add_argument(
            '--overlay-key-file', metavar='<path>',
            help='file holding the overlay deployment key (default: %s in '
                 'clouds.yaml)' % locate.CONFIG_KEY_FILE)
        return parser

    def _overlay(self, parsed_args) -> locate.Overlay:
        options = getattr(self.app.client_manager, '_cli_options', None)
        config = getattr(options, 'config', None) or {}
        return locate.overlay_for(
            parsed_args.overlay_agent or config.get(locate.CONFIG_AGENT),
            parsed_args.overlay_key_file or config.get(
                locate.CONFIG_KEY_FILE))

    def take_action(self, parsed_args):
        client = self.app.client_manager.discovery
        here = client.region_name
        regions = client.regions()
        order = locate.search_order(client, here, regions)
        found = locate.locate_anywhere(client, self._overlay(parsed_args),
                                       here, order, parsed_args.server,
                                       regions)
        server = found.server
        fields = {
            'id': server.get('id'),
            'name': server.get('name'),
            'pop': found.pop,
            'region': found.region,
            'host': found.host,
            'status': server.get('status'),
            'availability_zone': server.get(locate.AVAILABILITY_ZONE),
            'origin': found.metadata.get(locate.KEY_ORIGIN),
            'method': found.method,
            'overlay_route': found.route,
            'path': columns.PathColumn(found.path),
        }
        return tuple(fields), tuple(fields.values())
