"""``discovery-nova cloud up|status|down``: the local multi-PoP cloud.

``stop-pop`` and ``start-pop`` take one PoP away (cleanly or as a crash)
and bring it back, for failure scenarios; ``demo`` runs them all against
a running cloud and reports what went where.

``add_subparser(subparsers)`` plugs the ``cloud`` command into the
project's CLI; ``python -m discovery_nova.cloud`` runs it on its own.
"""

import argparse
from pathlib import Path
import sys

from discovery_nova.cloud import launcher
from discovery_nova.cloud import layout as layout_mod
from discovery_nova.cloud import settings as settings_mod
from discovery_nova.cloud.services import MissingProgram


def _state_dir(args) -> Path:
    return Path(args.state_dir) if args.state_dir else \
        settings_mod.default_state_dir()


def _compute_size(text: str) -> tuple[int, int]:
    """``VCPUS:RAM_MB`` as two integers, for argparse."""
    parts = text.split(':')
    try:
        if len(parts) != 2:
            raise ValueError(text)
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(
            '%r is not VCPUS:RAM_MB (two integers, e.g. 16:16384)'
            % text) from None


def cmd_up(args) -> int:
    state_dir = _state_dir(args)
    names = args.pop_names.split(',') if args.pop_names else None
    try:
        layout = layout_mod.make_layout(args.pops, args.base_port, names)
        settings = settings_mod.CloudSettings(
            state_dir=state_dir.resolve(), layout=layout,
            database=args.database, transport=args.transport,
            conductor=args.conductor, computes_per_pop=args.computes,
            compute_vcpus=args.compute_size[0],
            compute_ram_mb=args.compute_size[1],
            compute_driver=args.compute_driver,
            nova_conf_extra=[Path(p).resolve() for p in args.nova_conf],
            clouds_yaml=(None if args.clouds_yaml == 'none'
                         else Path(args.clouds_yaml).expanduser()))
        for extra in settings.nova_conf_extra:
            launcher.config_files.read_nova_snippet(extra)
        summary = launcher.up(settings, launcher.Progress(),
                              start_timeout=args.timeout)
    except (layout_mod.LayoutError, ValueError, launcher.CloudError,
            MissingProgram) as exc:
        print('cloud up: %s' % exc, file=sys.stderr)
        return 1
    print(launcher.pop_table(settings))
    print('up in %.1f s; try:\n  openstack --os-cloud %s --os-region-name '
          '%s server create --flavor dn.tiny --image %s --nic none demo'
          % (summary['seconds'], settings_mod.CLOUD_NAME, summary['pops'][0],
             launcher.IMAGE_NAME))
    if settings.clouds_yaml is None:
        print('  (with OS_CLIENT_CONFIG_FILE=%s)'
              % (state_dir / 'clouds.yaml'))
    return 0


def cmd_status(args) -> int:
    try:
        results = launcher.status(_state_dir(args))
        settings = settings_mod.CloudSettings.load(_state_dir(args))
    except (ValueError, launcher.CloudError) as exc:
        print('cloud status: %s' % exc, file=sys.stderr)
        return 1
    print(launcher.pop_table(settings))
    print()
    print(launcher.health.format_table(results))
    bad = [r.name for r in results if not r.healthy]
    print('%d services, %d healthy' % (len(results),
                                       len(results) - len(bad)))
    return 0 if not bad else 3


def cmd_down(args) -> int:
    try:
        launcher.down(_state_dir(args), launcher.Progress())
    except (ValueError, launcher.CloudError) as exc:
        print('cloud down: %s' % exc, file=sys.stderr)
        return 1
    return 0


def cmd_stop_pop(args) -> int:
    try:
        launcher.stop_pop(_state_dir(args), args.pop, kill=args.kill,
                          progress=launcher.Progress())
    except (ValueError, launcher.CloudError) as exc:
        print('cloud stop-pop: %s' % exc, file=sys.stderr)
        return 1
    return 0


def cmd_start_pop(args) -> int:
    try:
        launcher.start_pop(_state_dir(args), args.pop,
                           progress=launcher.Progress(),
                           start_timeout=args.timeout)
    except (ValueError, launcher.CloudError, MissingProgram) as exc:
        print('cloud start-pop: %s' % exc, file=sys.stderr)
        return 1
    return 0


def cmd_demo(args) -> int:
    from keystoneauth1 import exceptions as ks_exc
    from openstack import exceptions as sdk_exc

    from discovery_nova.cloud import demo as demo_mod
    from discovery_nova.cloud import demo_report

    out = Path(args.output_dir)
    try:
        demo = demo_mod.Demo(_state_dir(args), launcher.Progress(),
                             skip_failure=args.skip_failure)
    except demo_mod.DemoError as exc:
        print('cloud demo: %s' % exc, file=sys.stderr)
        return 1
    failed = None
    try:
        demo.run()
    except (demo_mod.DemoError, launcher.CloudError,
            sdk_exc.SDKException, ks_exc.ClientException) as exc:
        failed = exc
    result = demo.result
    print()
    print(demo_report.format_table(result.rows))
    for note in result.notes:
        print('* %s' % note)
    out.mkdir(parents=True, exist_ok=True)
    files = [demo_report.write_json(result, out / 'demo.json'),
             demo_report.write_map(result, out / 'demo.png')]
    print('wrote %s' % ', '.join(str(f) for f in files))
    if failed is not None:
        print('cloud demo: %s' % failed, file=sys.stderr)
        return 1
    print('demo done in %.0f s' % result.seconds)
    return 0


def add_subparser(subparsers) -> argparse.ArgumentParser:
    """Add ``cloud`` with its ``up``, ``status`` and ``down`` commands."""
    cloud = subparsers.add_parser(
        'cloud', help='run several independent Nova PoPs on this machine',
        description=__doc__.splitlines()[0])
    cloud.add_argument(
        '--state-dir', help='configs, databases, logs and pid files '
        '(default: $DISCOVERY_NOVA_STATE_DIR or %s)'
        % settings_mod.default_state_dir())
    commands = cloud.add_subparsers(dest='cloud_command', required=True)

    up = commands.add_parser('up', help='start the PoPs')
    up.add_argument('--pops', type=int, default=3,
                    help='number of PoPs (default 3)')
    up.add_argument('--pop-names', help='comma-separated PlanetLab matrix '
                    'nodes to use as PoPs (e.g. pl255,pl023,pl158); default: '
                    'well-separated nodes chosen from the matrix')
    up.add_argument('--base-port', type=int,
                    default=settings_mod.DEFAULT_BASE_PORT,
                    help='first port: keystone; glance +1, network +2, PoP '
                    'i at +10*(i+1) (default %d)'
                    % settings_mod.DEFAULT_BASE_PORT)
    up.add_argument('--database', choices=settings_mod.DATABASES,
                    default='sqlite',
                    help='sqlite files (default), or one MariaDB/PostgreSQL '
                    'database per service and PoP on 127.0.0.1')
    up.add_argument('--transport', choices=settings_mod.TRANSPORTS,
                    default=settings_mod.DEFAULT_TRANSPORT,
                    help='messaging inside each PoP: a RabbitMQ vhost per '
                    'PoP, or the p2p driver (default %s)'
                    % settings_mod.DEFAULT_TRANSPORT)
    up.add_argument('--conductor', choices=settings_mod.CONDUCTORS,
                    default=settings_mod.DEFAULT_CONDUCTOR,
                    help='our discovery-conductor, which forwards what a '
                    'PoP cannot place to the nearest PoPs, or plain '
                    'nova-conductor (PoPs on their own) (default %s)'
                    % settings_mod.DEFAULT_CONDUCTOR)
    up.add_argument('--computes', type=int,
                    default=settings_mod.DEFAULT_COMPUTES,
                    help='nova-compute services per PoP (default %d)'
                    % settings_mod.DEFAULT_COMPUTES)
    up.add_argument('--compute-size', type=_compute_size,
                    default=(settings_mod.DEFAULT_COMPUTE_VCPUS,
                             settings_mod.DEFAULT_COMPUTE_RAM_MB),
                    metavar='VCPUS:RAM_MB',
                    help='capacity each compute offers (default %d:%d)'
                    % (settings_mod.DEFAULT_COMPUTE_VCPUS,
                       settings_mod.DEFAULT_COMPUTE_RAM_MB))
    up.add_argument('--compute-driver',
                    default=settings_mod.DEFAULT_COMPUTE_DRIVER,
                    help='virt driver of the computes, under nova.virt '
                    '(default %(default)s: FakeDriver capacity, '
                    'restartable; fake.SmallFakeDriver: 2 vCPUs, 8 GiB, '
                    'not restartable)')
    up.add_argument('--nova-conf', action='append', default=[],
                    metavar='FILE', help='extra nova.conf snippet read by '
                    'every nova service of every PoP after nova.conf '
                    '(e.g. scheduler filters); repeatable')
    up.add_argument('--clouds-yaml', default=str(
        settings_mod.default_clouds_yaml()), help='clouds.yaml to add the '
        '"discovery" cloud to, or "none" (a copy is always in the state '
        'directory; default %(default)s)')
    up.add_argument('--timeout', type=float, default=launcher.START_TIMEOUT,
                    help='seconds to wait for the services (default '
                    '%(default)s)')
    up.set_defaults(func=cmd_up)

    status = commands.add_parser(
        'status', help='every service of every PoP and its health; exit '
        'status 3 if any is unhealthy')
    status.set_defaults(func=cmd_status)

    down = commands.add_parser('down', help='stop every service')
    down.set_defaults(func=cmd_down)

    stop_pop = commands.add_parser(
        'stop-pop', help="stop one PoP's services (the others keep "
        'running); --kill makes it a crash')
    stop_pop.add_argument('pop', help='PoP name (keystone region)')
    stop_pop.add_argument('--kill', action='store_true',
                          help='SIGKILL at once instead of a clean stop')
    stop_pop.set_defaults(func=cmd_stop_pop)

    start_pop = commands.add_parser(
        'start-pop', help="start again a stopped PoP's services, with its "
        'data kept')
    start_pop.add_argument('pop', help='PoP name (keystone region)')
    start_pop.add_argument('--timeout', type=float,
                           default=launcher.START_TIMEOUT,
                           help='seconds to wait (default %(default)s)')
    start_pop.set_defaults(func=cmd_start_pop)

    demo = commands.add_parser(
        'demo', help='against a running cloud: locality hints, overflow '
        'to the nearest PoP, a malformed hint and a killed PoP; prints '
        'what went where and writes demo.json and demo.png')
    # Also accepted after "demo"; SUPPRESS keeps the one given before it.
    demo.add_argument('--state-dir', default=argparse.SUPPRESS,
                      help='as for "cloud"')
    demo.add_argument('--output-dir', default='demo-output',
                      help='where demo.json and demo.png go (default '
                      '%(default)s)')
    demo.add_argument('--skip-failure', action='store_true',
                      help='do not kill and restart a PoP (saves a minute '
                      'or two)')
    demo.set_defaults(func=cmd_demo)
    return cloud


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m discovery_nova.cloud')
    add_subparser(parser.add_subparsers(dest='command', required=True))
    args = parser.parse_args(argv)
    return args.func(args)
