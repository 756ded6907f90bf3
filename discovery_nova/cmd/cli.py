"""``discovery-nova``: the operator's command for simulation and checks.

Sub-commands:

* ``simulate``: the overlay (Vivaldi, spiral search, ring routing) under a
  virtual clock over an RTT matrix; prints its figures against the targets
  and writes PNG plots plus a JSON report.
* ``members``: lists the members of an overlay membership group on a tooz
  backend; the quickest check that a backend URL works.
* ``cloud``: the local multi-PoP cloud (``discovery_nova.cloud``).

Errors in the input (an unreadable or malformed matrix, an unknown node
name, an unreachable backend) end the command with one line on stderr
naming what and where, and exit status 2; nothing is half-written.
"""

import argparse
import sys

from discovery_nova.cloud import cli as cloud_cli
from discovery_nova.overlay.errors import MembershipUnavailable
from discovery_nova.sim import topology as topo


class UsageError(Exception):
    """A problem with the command's input; printed as one line."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            '%r is not a whole number' % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError('%d is not >= 1' % value)
    return value


def _size_list(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(',') if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            '%r is not a comma-separated list of node counts, e.g. '
            '100,1000,10000' % text) from None
    if not sizes or min(sizes) < 8:
        raise argparse.ArgumentTypeError(
            'node counts must be >= 8, got %r' % text)
    return sizes


def _progress_factory(enabled: bool):
    """A factory of ``progress(done, total)`` callbacks drawing tqdm bars."""
    if not enabled:
        return lambda label, total: None
    from tqdm import tqdm

    def make(label: str, total: int):
        bar = tqdm(total=total, desc=label, unit='step', leave=True,
                   file=sys.stderr, dynamic_ncols=True)

        def update(done: int, total_: int) -> None:
            bar.total = total_
            bar.n = done
            bar.refresh()
            if done >= total_:
                bar.close()
        return update
    return make


def build_topology(args) -> topo.Topology:
    if args.matrix:
        matrix = topo.load_rtt_matrix(args.matrix)
        return topo.MatrixTopology(matrix, source=args.matrix)
    if args.topology == 'planetlab':
        return topo.PlanetLabTopology()
    cls = topo.TOPOLOGIES[args.topology]
    try:
        return cls(size=args.nodes, seed=args.seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_simulate(args) -> int:
    from discovery_nova.sim import runner

    topology = build_topology(args)
    if args.show_node is not None:
        try:
            topology.index_of(args.show_node)
        except KeyError as exc:
            raise UsageError(exc.args[0]) from None
    progress = _progress_factory(args.progress)
    print('discovery-nova simulate: %s, %d rounds, seed %d'
          % (topology.describe(), args.rounds, args.seed))
    with runner.OutputDir(args.output_dir) as out:
        result = runner.simulate(
            topology, rounds=args.rounds, seed=args.seed,
            search_every=args.search_every,
            routing_sizes=None if args.skip_routing else args.routing_sizes,
            warmup_lookups=args.warmup_lookups,
            show_node=args.show_node, outdir=out,
            progress=progress)
    print()
    print(result.text)
    print()
    print('wrote %s/: %s' % (args.output_dir.rstrip('/'),
                             ', '.join(result.files)))
    return 0


def cmd_members(args) -> int:
    from discovery_nova.overlay import errors
    from discovery_nova.overlay import tooz_membership

    observer = tooz_membership.ToozMembership(
        args.url, args.group, op_timeout=args.timeout)
    try:
        observer.start()
        observer.poll()
        members = sorted(observer.members().values(), key=lambda m: m.name)
    except errors.MembershipUnavailable as exc:
        raise UsageError(str(exc)) from None
    finally:
        observer.stop()
    if not members:
        print('group %s on %s has no members'
              % (args.group, tooz_membership.redact_url(args.url)))
        return 0
    for member in members:
        coord = member.coordinate
        print('%-24s %-22s %s' % (
            member.name, member.address or '-',
            '-' if coord is None else ' '.join(
                '%.1f' % x for x in coord.vec + (coord.height,))))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='discovery-nova',
        description='discovery-nova: overlay simulation, membership '
                    'checks and the local multi-PoP cloud.')
    sub = parser.add_subparsers(dest='command', required=True)

    sim = sub.add_parser(
        'simulate', help='run the overlay under a virtual clock',
        description='Run Vivaldi, the spiral search and ring routing under '
                    'a virtual clock over an RTT matrix; print the figures '
                    'and write plots.')
    sim.add_argument('--topology', choices=sorted(topo.TOPOLOGIES),
                     default='planetlab',
                     help='shipped PlanetLab matrix (490 real nodes) or a '
                          'generated one (default: %(default)s)')
    sim.add_argument('--matrix', metavar='PATH',
                     help='RTT matrix file (N x N, ms, whitespace-separated,'
                          ' .xz/.gz accepted) instead of --topology')
    sim.add_argument('--nodes', type=_positive_int, default=1000,
                     help='node count of a generated topology '
                          '(default: %(default)s)')
    sim.add_argument('--rounds', type=_positive_int, default=300,
                     help='Vivaldi rounds (default: %(default)s)')
    sim.add_argument('--search-every', type=int, default=10,
                     help='rounds between two spiral searches of a node; '
                          '0 disables them (default: %(default)s)')
    sim.add_argument('--routing-sizes', type=_size_list,
                     default=[100, 300, 1000, 3000, 10000],
                     help='ring sizes for the routing figure '
                          '(default: 100,300,1000,3000,10000)')
    sim.add_argument('--warmup-lookups', type=_positive_int, default=3,
                     help='learning warm-up: lookups per node '
                          '(default: %(default)s)')
    sim.add_argument('--skip-routing', action='store_true',
                     help='run only coordinates and spiral search')
    sim.add_argument('--show-node', metavar='NAME',
                     help='also print the nearest peers found for this '
                          'node against its true nearest')
    sim.add_argument('--seed', type=int, default=0)
    sim.add_argument('--output-dir', default='sim-output',
                     help='where plots and report.json go '
                          '(default: %(default)s)')
    sim.add_argument('--no-progress', dest='progress',
                     action='store_false', help='no progress bars')
    sim.set_defaults(func=cmd_simulate)

    mem = sub.add_parser(
        'members', help='list the members of an overlay group',
        description='List the agents in a membership group on a tooz '
                    'backend (file://, redis://, etcd3+http://, ...).')
    mem.add_argument('--url', required=True, help='tooz backend URL')
    mem.add_argument('--group', default='discovery-overlay')
    mem.add_argument('--timeout', type=float, default=5.0)
    mem.set_defaults(func=cmd_members)

    cloud_cli.add_subparser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, topo.RttMatrixError, MembershipUnavailable) as exc:
        print('discovery-nova %s: error: %s' % (args.command, exc),
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('discovery-nova %s: interrupted' % args.command,
              file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
