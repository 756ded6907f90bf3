"""``openstack discovery pop list|show`` and ``openstack discovery
neighbors``: the PoPs the current region knows, seen from it."""

import argparse

from osc_lib.cli import format_columns
from osc_lib.command import command

from discovery_nova.osc import columns
from discovery_nova.osc import survey

ADMIN_NOTE = (
    'The PoPs are read from the host aggregates of the current region '
    '(--os-region-name), which needs the admin role by default policy.')


def _client(cmd):
    return cmd.app.client_manager.discovery


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            'expected a whole number >= 1, got %r' % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            'expected a whole number >= 1, got %d' % value)
    return value


class ListPop(command.Lister):
    __doc__ = """List the PoPs known to the PoP of the current region.

    RTT is estimated from here (0 for this PoP) from the Vivaldi
    coordinates, as the scheduler and the conductor estimate it; Error is
    each PoP's own relative error estimate. Free capacity is live
    (placement) for this PoP and as published in the aggregate metadata
    for the others ("-" if not published). Health is up/total nova-compute
    services, asked of each PoP's region with the same credentials
    ("unknown" when the catalog has no compute API for it). """ + ADMIN_NOTE

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--sort', choices=('rtt', 'name'), default='rtt',
            help='order of the PoPs: nearest first (rtt, the default) or '
                 'by name')
        return parser

    def take_action(self, parsed_args):
        client = _client(self)
        directory = survey.read_directory(client)
        ranked = directory.ranked()
        if parsed_args.sort == 'name':
            ranked.sort(key=lambda pe: pe[0].name)
        entries = [entry for entry, _ in ranked]
        capacity = survey.capacities(client, directory, entries)
        health = survey.health_of(client, [e.name for e in entries])
        headers = ('Name', 'Coordinates', 'RTT (ms)', 'Error', 'Tags',
                   'Free vCPUs', 'Free RAM (MB)', 'Health')
        rows = []
        for entry, estimate in ranked:
            d = entry.descriptor
            free = capacity[entry.name]
            rows.append((
                entry.name, columns.CoordinateColumn(d.coordinate),
                columns.MillisecondsColumn(estimate.rtt_ms),
                columns.ErrorColumn(d.error), columns.TagsColumn(d.tags),
                columns.CountColumn(free.vcpus),
                columns.CountColumn(free.ram_mb), health[entry.name]))
        return headers, rows


class ShowPop(command.ShowOne):
    __doc__ = """Show everything the current region knows about one PoP.

    rtt_ms and rtt_error are the estimate from here and its relative error
    (both ends' errors combined); error is the PoP's own estimate.
    """ + ADMIN_NOTE

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('pop', metavar='<pop>',
                            help='PoP name (see "openstack discovery pop '
                                 'list")')
        return parser

    def take_action(self, parsed_args):
        client = _client(self)
        directory = survey.read_directory(client)
        entry = directory.find(parsed_args.pop)
        estimate = dict((e.name, est) for e, est in directory.ranked())[
            entry.name]
        free = survey.capacities(client, directory, [entry])[entry.name]
        health = survey.health_of(client, [entry.name])[entry.name]
        d = entry.descriptor
        fields = {
            'name': entry.name,
            'local': entry.name == directory.local.name,
            'seen_from': directory.region,
            'aggregate': entry.aggregate,
            'availability_zone': entry.availability_zone,
            'hosts': format_columns.ListColumn(list(entry.hosts)),
            'coordinates': columns.CoordinateColumn(d.coordinate),
            'error': columns.ErrorColumn(d.error),
            'rtt_ms': columns.MillisecondsColumn(estimate.rtt_ms),
            'rtt_error': columns.ErrorColumn(estimate.error),
            'measured_rtt_ms': columns.MeasuredColumn(d.measured_rtt),
            'client_rtt_ms': columns.MeasuredColumn(d.client_rtt),
            'tags': columns.TagsColumn(d.tags),
            'renewable_share': columns.NumberColumn(d.renewable_share),
            'pue': columns.NumberColumn(d.pue),
            'images': columns.TagsColumn(d.images),
            'free_vcpus': columns.CountColumn(free.vcpus),
            'free_ram_mb': columns.CountColumn(free.ram_mb),
            'capacity_source': free.source or columns.UNKNOWN,
            'health': health,
        }
        return tuple(fields), tuple(fields.values())


class ListNeighbors(command.Lister):
    __doc__ = """List the PoPs nearest to the current region's PoP.

    Ranked by estimated RTT exactly as the scheduler and the conductor rank
    them (ties by error, then name); PoPs without coordinates come last.
    Error is the estimate's relative error, both PoPs' Vivaldi errors
    combined. The current PoP itself is not listed. """ + ADMIN_NOTE

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--limit', metavar='<n>', type=_positive_int,
            help='show only the <n> nearest PoPs (a whole number >= 1)')
        return parser

    def take_action(self, parsed_args):
        directory = survey.read_directory(_client(self))
        ranked = [(entry, estimate) for entry, estimate in directory.ranked()
                  if entry.name != directory.local.name]
        if parsed_args.limit is not None:
            ranked = ranked[:parsed_args.limit]
        headers = ('Rank', 'Name', 'RTT (ms)', 'Error')
        rows = [(rank, entry.name,
                 columns.MillisecondsColumn(estimate.rtt_ms),
                 columns.ErrorColumn(estimate.error))
                for rank, (entry, estimate) in enumerate(ranked, 1)]
        return headers, rows
