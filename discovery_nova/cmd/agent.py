"""``discovery-agent``: run this PoP's overlay agent until told to stop.

With ``--query KIND`` it asks the running agent of the same configuration
instead (``status``, ``nearest``, ``locate``, ``put``) and prints the JSON
answer: the operator's view into the overlay.

Reads ``[discovery]`` (the PoP's name and tags), ``[discovery_overlay]``
and the client prefix table of ``[discovery_scheduler]`` (for the client
prefixes it probes) from ``--config-file``, turns them into
``AgentParams`` and runs an ``OverlayAgent`` on an asyncio loop. With
credentials in ``[discovery_aggregates]`` it also runs the
``AggregatePublisher``, a supervised service of the agent that keeps the
PoP's host aggregate fresh. SIGTERM and SIGINT leave membership and close
every socket before exiting. A configuration the agent cannot run with (no
or short deployment key, an unusable membership URL, a malformed client
probe target, unusable publisher credentials, a port in use) ends it at
once with one line naming the problem and exit status 2 (configuration) or
1 (start-up).
"""

import asyncio
import json
import math
import signal
import socket
import sys

from oslo_config import cfg
from oslo_log import log as logging

import discovery_nova.conf
from discovery_nova.locality.prefixes import PrefixTable
from discovery_nova.locality.prefixes import PrefixTableError
from discovery_nova.overlay.agent import QUERY_KINDS
from discovery_nova.overlay.agent import AgentParams
from discovery_nova.overlay.agent import OverlayAgent
from discovery_nova.overlay.agent import query
from discovery_nova.overlay.client_probe import ClientProbeError
from discovery_nova.overlay.client_probe import ClientTarget
from discovery_nova.overlay.client_probe import parse_client_probes
from discovery_nova.overlay.coordinates import VivaldiParams
from discovery_nova.overlay.errors import MembershipUnavailable
from discovery_nova.overlay.errors import OverlayError
from discovery_nova.overlay.ring import RingParams
from discovery_nova.overlay.spiral import SpiralParams
from discovery_nova.scheduler import aggregate_publisher
from discovery_nova.scheduler.aggregate_publisher import AggregatePublisher

LOG = logging.getLogger(__name__)

PROG = 'discovery-agent'

cli_opts = [
    cfg.StrOpt(
        'query',
        choices=QUERY_KINDS,
        help='Instead of running an agent, ask the agent of this '
             'configuration (its listen or advertise address, the '
             'deployment key) one query and print the JSON answer.'),
    cfg.StrOpt(
        'query-args',
        default='{}',
        help='Arguments of --query as a JSON object, e.g. \'{"k": 5}\' for '
             'nearest, \'{"key": "vm-1"}\' for locate, \'{"key": "vm-1", '
             '"value": {"pop": "a"}}\' for put.'),
    cfg.StrOpt(
        'emulated-rtt-file',
        help='Testing only: JSON file {"peer name": rtt_ms, ...}. Every '
             'message and probe to such a peer is held back for half that '
             'RTT, so agents on one host see WAN-like distances.'),
]


class ConfigProblem(Exception):
    """The configuration cannot run an agent; the text says why."""


def _read_key(group) -> bytes:
    key = group.deployment_key
    where = '[discovery_overlay] deployment_key'
    if not key and group.deployment_key_file:
        where = ('[discovery_overlay] deployment_key_file %s'
                 % group.deployment_key_file)
        try:
            with open(group.deployment_key_file, encoding='utf-8') as f:
                key = f.read().strip()
        except OSError as exc:
            raise ConfigProblem('cannot read %s: %s'
                                % (where, exc.strerror)) from None
    if not key:
        raise ConfigProblem(
            '[discovery_overlay] deployment_key (or deployment_key_file) is '
            'not set; expected the shared secret of the deployment, at '
            'least 16 characters')
    if len(key.encode('utf-8')) < 16:
        raise ConfigProblem('%s is %d characters long; expected at least 16'
                            % (where, len(key)))
    return key.encode('utf-8')


def _read_emulated_rtts(path: str | None) -> dict[str, float] | None:
    if not path:
        return None
    try:
        with open(path, encoding='utf-8') as f:
            table = json.load(f)
    except (OSError, ValueError) as exc:
        raise ConfigProblem('--emulated-rtt-file %s: %s' % (path, exc)
                            ) from None
    if not isinstance(table, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and
            not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 60000
            for k, v in table.items()):
        raise ConfigProblem('--emulated-rtt-file %s: expected a JSON object '
                            'of peer names to RTTs in ms (0 to 60000)'
                            % path)
    return {k: float(v) for k, v in table.items()}


def _client_targets(conf: cfg.ConfigOpts) -> tuple[ClientTarget, ...]:
    """``[discovery_overlay] client_probes``, each with the PoP its prefix
    maps to in ``[discovery_scheduler] client_prefixes``."""
    items = conf.discovery_overlay.client_probes
    if not items:
        return ()
    try:
        table = PrefixTable.parse(conf.discovery_scheduler.client_prefixes)
    except PrefixTableError as exc:
        raise ConfigProblem('[discovery_scheduler] client_prefixes: %s'
                            % exc) from None
    try:
        parsed = parse_client_probes(items)
    except ClientProbeError as exc:
        raise ConfigProblem('[discovery_overlay] client_probes: %s'
                            % exc) from None
    targets = []
    for network, (host, port) in parsed.items():
        pop = table.pop_of(network)
        if pop is None:
            raise ConfigProblem(
                '[discovery_overlay] client_probes: %s is not a prefix of '
                '[discovery_scheduler] client_prefixes; expected each '
                'probed CIDR to be exactly one of its CIDR=PoP entries'
                % network)
        targets.append(ClientTarget(str(network), pop, host, port))
    return tuple(targets)


def build_params(conf: cfg.ConfigOpts) -> AgentParams:
    """``AgentParams`` from the parsed configuration, or ConfigProblem."""
    overlay = conf.discovery_overlay
    name = conf.discovery.pop_name or socket.gethostname().split('.')[0]
    if overlay.membership_timeout <= overlay.membership_heartbeat_interval:
        raise ConfigProblem(
            '[discovery_overlay] membership_timeout (%s) must be larger than '
            'membership_heartbeat_interval (%s)'
            % (overlay.membership_timeout,
               overlay.membership_heartbeat_interval))
    if overlay.restart_backoff_max < overlay.restart_backoff:
        raise ConfigProblem(
            '[discovery_overlay] restart_backoff_max (%s) must not be below '
            'restart_backoff (%s)' % (overlay.restart_backoff_max,
                                      overlay.restart_backoff))
    try:
        return AgentParams(
            name=name,
            key=_read_key(overlay),
            listen_host=overlay.listen_host,
            listen_port=overlay.listen_port,
            advertise_host=overlay.advertise_host,
            tags=tuple(conf.discovery.pop_tags),
            max_message_bytes=overlay.max_message_bytes,
            request_timeout=overlay.request_timeout,
            probe_interval=overlay.probe_interval,
            probe_timeout=overlay.probe_timeout,
            vivaldi=VivaldiParams(
                dimensions=overlay.vivaldi_dimensions,
                cc=overlay.vivaldi_cc, ce=overlay.vivaldi_ce,
                max_rtt_ms=overlay.max_rtt_ms),
            vivaldi_neighbours=overlay.vivaldi_neighbours,
            spiral=SpiralParams.from_options(overlay),
            spiral_refresh_interval=overlay.spiral_refresh_interval,
            ring=RingParams.from_options(overlay),
            membership_backend=overlay.membership_backend,
            membership_url=overlay.membership_url,
            membership_group=overlay.membership_group,
            membership_heartbeat_interval=(
                overlay.membership_heartbeat_interval),
            membership_timeout=overlay.membership_timeout,
            restart_backoff=overlay.restart_backoff,
            restart_backoff_max=overlay.restart_backoff_max,
            # Rare: the file:// backend rewrites a record by leaving and
            # joining again, which the other agents briefly see.
            publish_interval=max(60.0, 30 * overlay.probe_interval),
            emulated_rtt_ms=_read_emulated_rtts(conf.emulated_rtt_file),
            client_probes=_client_targets(conf),
            client_probe_pops=overlay.client_probe_pops,
            client_probe_limit=overlay.client_probe_limit,
            client_probe_interval=overlay.client_probe_interval,
        )
    except ValueError as exc:
        raise ConfigProblem(str(exc)) from None


def build_publisher(conf: cfg.ConfigOpts,
                    name: str) -> AggregatePublisher | None:
    """The aggregate publisher of PoP ``name``, None when it is off, or
    ConfigProblem."""
    try:
        publisher = aggregate_publisher.from_conf(conf, name)
    except aggregate_publisher.PublisherConfigError as exc:
        raise ConfigProblem(str(exc)) from None
    if publisher is None:
        LOG.info('Aggregate publisher off: [discovery_aggregates] auth_type '
                 'is not set; PoP %(pop)s aggregate metadata is not '
                 'written by this agent', {'pop': name})
    else:
        LOG.info('Aggregate publisher on: PoP %(pop)s aggregate written '
                 'every %(interval)s s through the compute API',
                 {'pop': name, 'interval': publisher.interval})
    return publisher


async def _run(params: AgentParams,
               publisher: AggregatePublisher | None = None) -> None:
    agent = OverlayAgent(params)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await agent.start()
    if publisher is not None:
        # Supervised like the agent's own loops: restarted if it fails,
        # stopped (cancelled) with them.
        agent.supervisor.add('aggregates', lambda: publisher.run(
            agent.locality_view))
    try:
        await stop.wait()
        LOG.info('Overlay agent %(name)s stopping', {'name': agent.name})
    finally:
        await agent.stop()


def _ask(params: AgentParams, kind: str, raw_args: str) -> int:
    try:
        args = json.loads(raw_args)
    except ValueError as exc:
        return _fail(2, '--query-args is not JSON: %s' % exc)
    if not isinstance(args, dict) or 'type' in args or 'id' in args:
        return _fail(2, '--query-args must be a JSON object of the query\'s '
                     'arguments (without "type" and "id")')
    host = params.advertise_host or params.listen_host
    if host in ('0.0.0.0', '::', ''):
        host = '127.0.0.1'
    try:
        result = asyncio.run(query(host, params.listen_port, params.key,
                                   kind, timeout=params.request_timeout * 4,
                                   name='%s-cli' % params.name, **args))
    except (OverlayError, OSError, TimeoutError) as exc:
        return _fail(1, 'query %s to %s:%d failed: %s'
                     % (kind, host, params.listen_port,
                        exc or type(exc).__name__))
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def _fail(status: int, text: str) -> int:
    print('%s: error: %s' % (PROG, text), file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    conf = cfg.ConfigOpts()
    discovery_nova.conf.register_opts(conf)
    conf.register_cli_opts(cli_opts)
    logging.register_options(conf)
    try:
        try:
            conf(sys.argv[1:] if argv is None else argv,
                 project='discovery-nova', prog=PROG)
        except SystemExit as exc:
            # The argument parser printed what was wrong (or --help).
            return 0 if exc.code in (0, None) else 2
        discovery_nova.conf.validate(conf)
        params = build_params(conf)
    except (cfg.Error, ValueError) as exc:
        return _fail(2, str(exc).splitlines()[0] if str(exc) else repr(exc))
    except ConfigProblem as exc:
        return _fail(2, str(exc))
    if conf.query:
        return _ask(params, conf.query, conf.query_args)
    logging.setup(conf, 'discovery-nova')
    try:
        publisher = build_publisher(conf, params.name)
    except ConfigProblem as exc:
        return _fail(2, str(exc))
    try:
        asyncio.run(_run(params, publisher))
    except MembershipUnavailable as exc:
        return _fail(1, str(exc))
    except OSError as exc:
        return _fail(1, 'cannot listen on %s:%d: %s'
                     % (params.listen_host, params.listen_port,
                        exc.strerror or exc))
    return 0


if __name__ == '__main__':
    sys.exit(main())
