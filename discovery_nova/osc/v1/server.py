"""``openstack discovery server locate``: where a server runs."""

from osc_lib.command import command

from discovery_nova.osc import columns
from discovery_nova.osc import locate


class LocateServer(command.ShowOne):
    """Find the PoP a server runs at, and the path that found it.

    The current region (--os-region-name) is asked first. A server it
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
        return parser

    def take_action(self, parsed_args):
        client = self.app.client_manager.discovery
        here = client.region_name
        regions = client.regions()
        order = locate.search_order(client, here, regions)
        found = locate.locate(client, here, order, parsed_args.server,
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
            'path': columns.PathColumn(found.path),
        }
        return tuple(fields), tuple(fields.values())
