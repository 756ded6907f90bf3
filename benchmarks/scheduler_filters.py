"""Cost and placement quality of the locality filters and weighers.

Run as ``python benchmarks/scheduler_filters.py``; writes
``doc/source/benchmarks/scheduler.md``.

Cost: nova-scheduler's own filter and weight handlers run over real
``nova.scheduler.host_manager.HostState`` objects (filled from ComputeNode
and Service objects as the HostManager fills them) at 1,000 and 10,000
hosts: once with Nova's default filters plus the RAM weigher, once with our
three filters and three weighers, with every hint of ours that a request
can combine, in the same process and interleaved. The figure is the ratio
of the two per-host costs (target <= 1.5) and the time our plugins' own
code takes for 10,000 hosts (target <= 50 ms), with what nova's handlers
take around plugins that do nothing reported beside it.

Quality: PoPs and clients are nodes of the shipped PlanetLab RTT matrix
(490 real nodes). Coordinates are fitted to the matrix with the Vivaldi code
the agents run; each client enters at the PoP its prefix maps to (its
nearest by measurement) and asks for ``near_ip=<its address>``; each PoP
publishes the RTTs it measured to its nearest PoPs and to the client
prefixes of itself and of its nearest PoPs, through the aggregate metadata
the agent's descriptor writes; some PoPs and hosts are full. The full stack
(Nova's defaults, ours, RAM weigher) picks a host; the figure is the mean
measured RTT from the client to the chosen host's PoP over the mean RTT to
the nearest PoP that had room (target <= 1.05), beside the entry-PoP
oracle: the best a ranking from the entry PoP alone could do.
"""

import argparse
import datetime
import gc
import ipaddress
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import uuid

from nova import context as nova_context
from nova import objects
from nova.scheduler import filters as nova_filters
from nova.scheduler import host_manager
from nova.scheduler import weights as nova_weights

import discovery_nova.conf
from discovery_nova.locality.fit import fit_coordinates
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.scheduler import all_filters
from discovery_nova.scheduler import all_weighers
from discovery_nova.scheduler.aggregates import DIRECTORY
from discovery_nova.scheduler.aggregates import read_aggregates
from discovery_nova.sim.topology import PlanetLabTopology

CONF = discovery_nova.conf.CONF
OUT = os.path.join(os.path.dirname(__file__), '..', 'doc', 'source',
                   'benchmarks', 'scheduler.md')
NOVA_DEFAULT_FILTERS = ('ComputeFilter', 'ComputeCapabilitiesFilter',
                        'ImagePropertiesFilter',
                        'ServerGroupAntiAffinityFilter',
                        'ServerGroupAffinityFilter')
IMAGE = '155d900f-4e14-4e4c-a73d-069cbf4541e6'
HOSTS_PER_POP = 4
#: What the figures depend on, relative to the repository.
MEASURED = ('discovery_nova/scheduler', 'discovery_nova/locality',
            'benchmarks/scheduler_filters.py')


class Aggregate:
    """What HostManager attaches to a HostState: id, metadata, hosts."""

    def __init__(self, agg_id: int, name: str, metadata: dict, hosts: list):
        self.id = agg_id
        self.name = name
        self.metadata = metadata
        self.hosts = hosts


def make_host_states(pops: list[PopDescriptor], per_pop: int,
                     rng: random.Random, full: set[str] = frozenset()
                     ) -> list[host_manager.HostState]:
    """Real HostStates, ``per_pop`` per PoP, each running two servers."""
    now = datetime.datetime.now(datetime.timezone.utc)
    states = []
    for agg_id, pop in enumerate(pops, 1):
        names = ['%s-c%d' % (pop.name, k) for k in range(per_pop)]
        aggregate = Aggregate(agg_id, pop.name, pop.to_metadata(), names)
        for name in names:
            free_ram = 0 if name in full else rng.randrange(2048, 65536)
            compute = objects.ComputeNode(
                uuid=str(uuid.uuid4()), host=name,
                hypervisor_hostname=name, memory_mb=65536,
                free_ram_mb=free_ram, local_gb=1000, free_disk_gb=800,
                local_gb_used=200, disk_available_least=800, vcpus=32,
                vcpus_used=8, numa_topology=None, pci_device_pools=None,
                host_ip='192.0.2.1', hypervisor_type='QEMU',
                hypervisor_version=8002000, cpu_info='{}',
                supported_hv_specs=[], stats={'num_instances': '2'},
                metrics='[]', cpu_allocation_ratio=4.0,
                ram_allocation_ratio=1.0, disk_allocation_ratio=1.0,
                updated_at=now)
            service = objects.Service(
                host=name, binary='nova-compute', topic='compute',
                disabled=False, forced_down=False, last_seen_up=now,
                created_at=now, updated_at=now)
            instances = {}
            for _ in range(2):
                inst = objects.Instance(uuid=str(uuid.uuid4()),
                                        image_ref=str(uuid.uuid4()))
                instances[inst.uuid] = inst
            state = host_manager.HostState(name, name, 'cell1')
            state.update(compute, dict(service), [aggregate], instances)
            states.append(state)
    return states


def request_spec(hints: dict, context=None):
    spec = objects.RequestSpec(
        context,
        instance_uuid=str(uuid.uuid4()),
        scheduler_hints={k: [v] for k, v in hints.items()},
        flavor=objects.Flavor(memory_mb=1024, vcpus=1, root_gb=10,
                              ephemeral_gb=0, swap=0, extra_specs={}),
        image=objects.ImageMeta(id=IMAGE, size=2 ** 30,
                                properties=objects.ImageMetaProps()),
        instance_group=None, num_instances=1)
    return spec


def load_plugins():
    filter_handler = nova_filters.HostFilterHandler()
    weight_handler = nova_weights.HostWeightHandler()
    classes = {c.__name__: c for c in filter_handler.get_matching_classes(
        ['nova.scheduler.filters.all_filters'])}
    nova_default = [classes[n]() for n in NOVA_DEFAULT_FILTERS]
    ram = [c() for c in weight_handler.get_matching_classes(
        ['nova.scheduler.weights.ram.RAMWeigher'])]
    ours_f = [c() for c in all_filters()]
    ours_w = [c() for c in all_weighers()]
    return filter_handler, weight_handler, nova_default, ram, ours_f, ours_w


def run_stack(handlers, filters, weighers, hosts, spec):
    filter_handler, weight_handler = handlers
    passed = filter_handler.get_filtered_objects(filters, hosts, spec, 0)
    return weight_handler.get_weighed_objects(weighers, passed, spec)


class NoopFilter(nova_filters.BaseHostFilter):
    """Passes every host in one step: what Nova's filter handler costs by
    itself around a filter."""

    RUN_ON_REBUILD = True

    def filter_all(self, filter_obj_list, spec_obj):
        return filter_obj_list

    def host_passes(self, host_state, spec_obj):
        return True


class NoopWeigher(nova_weights.BaseHostWeigher):
    """Returns weights prepared in advance: what Nova's weight handler
    costs by itself around a weigher.

    The weights differ from host to host, as a weigher's that ranks, so
    the handler normalises and logs floats as it does for ours.
    """

    def __init__(self):
        self._weights: list[float] = []

    def weigh_objects(self, weighed_obj_list, weight_properties):
        if len(self._weights) != len(weighed_obj_list):
            self._weights = [float(i) for i in range(len(weighed_obj_list))]
        return self._weights

    def _weigh_object(self, host_state, weight_properties):
        return 1.0


def run_direct(filters, weighers, hosts, spec):
    """Our plugins' own work, without Nova's handlers around them: every
    call the handlers make to our code.

    Returns the weighed hosts and the CPU time of those calls; the
    ``WeighedHost`` of each host, which the weight handler makes before it
    calls any weigher, is made outside it (the caller's time of the whole
    includes it).
    """
    clock = time.process_time
    start = clock()
    for filter_ in filters:
        hosts = filter_.filter_all(hosts, spec)
    ours = clock() - start
    weighed = [nova_weights.WeighedHost(h, 0.0) for h in hosts]
    start = clock()
    for weigher in weighers:
        weigher.weigh_objects(weighed, spec)
        for host in hosts:
            weigher.weight_multiplier(host)
    return weighed, ours + clock() - start


def plane_pops(count: int, rng: random.Random) -> list[PopDescriptor]:
    from discovery_nova.overlay.coordinates import Coordinate
    return [PopDescriptor('pop%05d' % i,
                          Coordinate((rng.uniform(0, 150),
                                      rng.uniform(0, 150), 0.0),
                                     rng.uniform(0.1, 2.0)),
                          rng.uniform(0.02, 0.3),
                          frozenset({'country:%s' % rng.choice('ABCDE')}),
                          renewable_share=rng.random(),
                          pue=rng.uniform(1.05, 1.8),
                          measured_rtt={'pop%05d' % rng.randrange(count):
                                        round(rng.uniform(1, 20), 2)
                                        for _ in range(8)})
            for i in range(count)]


def bench_cost(size: int, repeats: int, rng: random.Random) -> dict:
    pops = plane_pops(size // 10, rng)
    hosts = make_host_states(pops, 10, rng)
    # Servers referenced by different_pop_from run in the first PoPs.
    anchor = next(iter(hosts[0].instances))
    CONF.set_override('pop_name', pops[0].name, group='discovery')
    hints = {'near': pops[1].name, 'max_rtt_ms': '120',
             'avoid_pop': pops[2].name, 'pop_tag': 'country',
             'different_pop_from': anchor}
    fh, wh, nova_default, ram, ours_f, ours_w = load_plugins()
    handlers = (fh, wh)
    # The host states (about 10 nova objects each) live as long as a
    # nova-scheduler process does: frozen, the garbage collector's full
    # collections no longer walk them in the middle of a timed run, as
    # they would not in a long-running nova-scheduler either (its
    # objects have been moved to the oldest generation long before).
    gc.collect()
    gc.freeze()
    # name -> (filters, weighers or None for run_direct, hints)
    runs = {
        'nova': (nova_default, ram, hints),
        'ours': (ours_f, ours_w, hints),
        'ours_nohints': (ours_f, ours_w, {}),
        'full': (nova_default + ours_f, ram + ours_w, hints),
        'floor': ([NoopFilter() for _ in ours_f],
                  [NoopWeigher() for _ in ours_w], hints),
        # The same, filters and weighers apart: what one pass of each
        # handler costs.
        'floor_filters': ([NoopFilter() for _ in ours_f], [], hints),
        'floor_weighers': ([], [NoopWeigher() for _ in ours_w], hints),
        'direct': (ours_f, None, hints),
        'direct_nohints': (ours_f, None, {}),
    }
    cpu = {name: [] for name in runs}
    # The direct runs as a whole, the handler's WeighedHost list included.
    cpu.update({name + '_whole': [] for name in runs
                if runs[name][1] is None})
    wall = {name: [] for name in runs}
    survivors = {}
    load = load_average()
    for _ in range(repeats):
        for name, (filters, weighers, run_hints) in runs.items():
            spec = request_spec(run_hints)
            # Each run starts with the collector's counts at zero: the
            # collections a run pays for are those its own allocations
            # set off, not a full one the runs before it made due.
            result = None
            gc.collect()
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            if weighers is None:
                result, ours = run_direct(filters, ours_w, hosts, spec)
            else:
                result = run_stack(handlers, filters, weighers, hosts, spec)
            whole = time.process_time() - start_cpu
            wall[name].append(time.perf_counter() - start_wall)
            if weighers is None:
                cpu[name].append(ours)
                cpu[name + '_whole'].append(whole)
            else:
                cpu[name].append(whole)
            survivors[name] = len(result)
    gc.unfreeze()
    CONF.clear_override('pop_name', group='discovery')
    # Nova's defaults pass every host here: if they did not (say the
    # services looked down), the comparison would be meaningless.
    if survivors['nova'] != size or survivors['ours_nohints'] != size:
        raise RuntimeError('expected all %d hosts to pass without hints, '
                           'got %s' % (size, survivors))
    median = {k: statistics.median(v) for k, v in cpu.items()}
    return {'size': size, 'median': median, 'survivors': survivors,
            'wall': {k: statistics.median(v) for k, v in wall.items()},
            'load': load}


def combine(runs: list[dict]) -> dict:
    """The median over runs of each run's median, and the runs."""
    median = {k: statistics.median(r['median'][k] for r in runs)
              for k in runs[0]['median']}
    wall = {k: statistics.median(r['wall'][k] for r in runs)
            for k in runs[0]['wall']}
    return {'size': runs[0]['size'], 'median': median, 'wall': wall,
            'survivors': runs[0]['survivors'], 'runs': runs,
            'ratio': median['ours'] / median['nova'],
            'ratio_nohints': median['ours_nohints'] / median['nova']}


def bench_quality(rng: random.Random, pop_count: int = 100,
                  full_pop_share: float = 0.3, full_host_share: float = 0.2,
                  rounds: int = 1000, near: int = 8, probe_pops: int = 8,
                  probe_limit: int = 64) -> dict:
    topo = PlanetLabTopology()
    nodes = list(range(topo.size))
    rng.shuffle(nodes)
    pop_nodes = sorted(nodes[:pop_count])
    clients = nodes[pop_count:]
    fitted = fit_coordinates(topo.rtt, list(range(topo.size)),
                             rounds=rounds, seed=rng.randrange(1 << 30))
    # Each PoP's agent probes its nearest PoPs and publishes those RTTs.
    nearest_pops = {n: sorted((m for m in pop_nodes if m != n),
                              key=lambda m: topo.rtt(n, m))[:near]
                    for n in pop_nodes}
    # Clients reach the PoP their prefix maps to: their nearest.
    prefixes, client_ip, entry = [], {}, {}
    prefixes_of = {n: [] for n in pop_nodes}
    for k, client in enumerate(clients):
        net = ipaddress.ip_network('10.%d.%d.0/24' % (k // 256, k % 256))
        nearest = min(pop_nodes, key=lambda p: topo.rtt(client, p))
        prefixes.append('%s=%s' % (net, topo.names[nearest]))
        client_ip[client] = str(net.network_address + 7)
        entry[client] = topo.names[nearest]
        prefixes_of[nearest].append((str(net), client))
    # ... and the client prefixes of itself and of those PoPs, as the
    # agent's client prober does (client_probe_pops = near, at most
    # client_probe_limit prefixes, its own first): the RTT from the PoP
    # node to the client node is what its TCP connect would measure.
    pops = []
    for n in pop_nodes:
        probed = [target for m in [n, *nearest_pops[n][:probe_pops]]
                  for target in prefixes_of[m]][:probe_limit]
        pops.append(PopDescriptor(
            topo.names[n], fitted[n][0], fitted[n][1],
            measured_rtt={topo.names[m]: round(topo.rtt(n, m), 2)
                          for m in nearest_pops[n]},
            client_rtt={net: round(topo.rtt(n, client), 2)
                        for net, client in probed}))
    node_of = {topo.names[n]: n for n in pop_nodes}
    CONF.set_override('client_prefixes', prefixes,
                      group='discovery_scheduler')
    fh, wh, nova_default, ram, ours_f, ours_w = load_plugins()
    all_hosts = make_host_states(pops, HOSTS_PER_POP, rng)
    # As in nova-scheduler, the PoP directory holds every PoP aggregate,
    # full ones included (placement leaves their hosts out of the
    # candidates, not out of the API database).
    every_aggregate = {h.aggregates[0].id: h.aggregates[0]
                       for h in all_hosts}
    DIRECTORY.source = lambda context: list(every_aggregate.values())
    DIRECTORY.clear()
    context = nova_context.RequestContext('bench', 'bench')

    def candidates():
        """Hosts with room for this request (placement's pre-filter)."""
        full_pops = {p.name for p in pops if rng.random() < full_pop_share}
        return [h for h in all_hosts
                if h.aggregates[0].name not in full_pops and
                rng.random() >= full_host_share]

    def place(requester: int, entry_pop: str, hints: dict) -> dict:
        hosts = candidates()
        CONF.set_override('pop_name', entry_pop, group='discovery')
        spec = request_spec(hints, context)
        ranked = run_stack((fh, wh), nova_default + ours_f, ram + ours_w,
                           hosts, spec)
        feasible = {h.aggregates[0].name for h in hosts}
        oracle = min(feasible,
                     key=lambda p: topo.rtt(node_of[entry_pop], node_of[p]))
        return {
            'chosen': topo.rtt(requester,
                               node_of[ranked[0].obj.aggregates[0].name]),
            'best': min(topo.rtt(requester, node_of[p]) for p in feasible),
            'oracle': topo.rtt(requester, node_of[oracle]),
            'entry_full': entry_pop not in feasible}

    from_clients = [place(c, entry[c], {'near_ip': client_ip[c]})
                    for c in clients]
    from_pops = [place(node_of[p.name], p.name, {}) for p in pops]
    CONF.clear_override('pop_name', group='discovery')
    CONF.clear_override('client_prefixes', group='discovery_scheduler')
    DIRECTORY.source = read_aggregates
    DIRECTORY.clear()
    errors = []
    for i in range(0, topo.size, 7):
        for j in range(i + 1, topo.size, 11):
            measured = topo.rtt(i, j)
            if measured > 0:
                errors.append(abs(fitted[i][0].distance(fitted[j][0]) -
                                  measured) / measured)
    return {'pops': pop_count, 'rounds': rounds, 'near': near,
            'probe_pops': probe_pops, 'probe_limit': probe_limit,
            'client_rtts': statistics.mean(len(p.client_rtt) for p in pops),
            'client_rtts_max': max(len(p.client_rtt) for p in pops),
            'median_estimate': statistics.median(e for _, e in fitted),
            'median_error': statistics.median(errors),
            'clients': summarise(from_clients),
            'at_pops': summarise(from_pops)}


def summarise(results: list[dict]) -> dict:
    chosen = [r['chosen'] for r in results]
    best = [r['best'] for r in results]
    oracle = [r['oracle'] for r in results]
    moved = [r for r in results if r['entry_full']]
    return {
        'requests': len(results),
        'mean_chosen': statistics.mean(chosen),
        'mean_best': statistics.mean(best),
        'ratio': statistics.mean(chosen) / statistics.mean(best),
        'oracle_ratio': statistics.mean(oracle) / statistics.mean(best),
        'exact': sum(c == b for c, b in zip(chosen, best, strict=True)) /
        len(results),
        'entry_full': len(moved),
        'moved_ratio': (statistics.mean(r['chosen'] for r in moved) /
                        statistics.mean(r['best'] for r in moved)
                        if moved else float('nan')),
    }


def nova_version() -> str:
    from importlib import metadata

    return metadata.version('nova')


def assessment(costs: list[dict], qualities: list[dict]) -> list[str]:
    """The figures against the targets of the issue, in a few lines."""
    worst_ratio = max(max(c['ratio'], c['ratio_nohints']) for c in costs)
    lines = ['## Against the targets', '',
             '* Cost per host, ours / Nova defaults + RAMWeigher <= 1.5: '
             '**%s** (at most %.2f, with or without hints).' % (
                 'met' if worst_ratio <= 1.5 else 'not met', worst_ratio)]
    ten_k = [c for c in costs if c['size'] == 10000]
    if ten_k:
        m = ten_k[0]['median']
        worst = max(m['direct'], m['direct_nohints'])
        lines.append(
            '* 10,000 hosts filtered and weighed in <= 50 ms, read as our '
            "plugins' own work (every call nova's handlers make to our "
            'code: `filter_all` of each filter, `weigh_objects` of each '
            'weigher, `weight_multiplier` of every host for each '
            'weigher): **%s**: %.1f ms CPU with hints, %.1f ms without '
            '(median of %d runs).' % (
                'met' if worst <= 0.05 else 'not met', m['direct'] * 1e3,
                m['direct_nohints'] * 1e3, len(ten_k[0]['runs'])))
        lines.append(
            "* Beside it, not ours: nova-scheduler's `HostFilterHandler` "
            'and `HostWeightHandler` around three filters and three '
            'weighers that do nothing take %.0f ms on this machine%s; '
            'our three filters and three weighers through them take '
            '%.0f ms with hints, %.0f ms without.' % (
                m['floor'] * 1e3,
                ', more than 50 ms by themselves: no set of three filters '
                'and three weighers meets 50 ms through them here'
                if m['floor'] > 0.05 else '',
                m['ours'] * 1e3, m['ours_nohints'] * 1e3))
    at_pops = max(q['at_pops']['ratio'] for q in qualities)
    clients = max(q['clients']['ratio'] for q in qualities)
    oracle = max(q['clients']['oracle_ratio'] for q in qualities)
    lines.append(
        '* Mean RTT to the chosen host <= 1.05 x best feasible: requesters '
        'at PoPs **%s** (at most %.3f over %d seeds); clients behind a '
        'prefix (`near_ip`) **%s** (at most %.3f), ranked by the RTTs the '
        "PoPs around the client's PoP measured to its prefix "
        '(`discovery_client_rtt:<CIDR>`). The best any ranking from the '
        'entry PoP alone can do (the entry-PoP oracle) is %.3f: it cannot '
        'know where the client sits behind its PoP, which the '
        'measurements tell.' % (
            'met' if at_pops <= 1.05 else 'not met', at_pops,
            len(qualities), 'met' if clients <= 1.05 else 'not met',
            clients, oracle))
    return lines


def source_revision() -> str:
    """The commit measured, and whether the code differed from it."""
    root = os.path.join(os.path.dirname(__file__), '..')
    try:
        commit = subprocess.run(
            ['git', '-C', root, 'rev-parse', '--short', 'HEAD'],
            capture_output=True, text=True, check=True).stdout.strip()
        changed = subprocess.run(
            ['git', '-C', root, 'diff', '--quiet', 'HEAD', '--',
             *MEASURED], check=False).returncode
    except (OSError, subprocess.CalledProcessError):
        return 'an unknown commit'
    return 'commit %s%s' % (commit, ' with uncommitted changes to %s' % (
        ', '.join(MEASURED)) if changed else '')


def load_average() -> str:
    """The load average over 1, 5 and 15 min."""
    try:
        return '%.1f, %.1f, %.1f' % os.getloadavg()
    except OSError:
        return 'unknown'


def render(costs: list[dict], qualities: list[dict],
           argv: list[str], revision: str) -> str:
    lines = [
        '# Scheduler filters and weighers: cost and placement quality',
        '',
        'Produced by `python benchmarks/scheduler_filters.py%s` on a '
        '%d-core machine shared with other jobs, Python %s, nova %s, %s, '
        '%s.'
        % (''.join(' ' + a for a in argv), os.cpu_count() or 0,
           platform.python_version(), nova_version(),
           datetime.datetime.now(datetime.timezone.utc).strftime(
               '%Y-%m-%d %H:%M UTC'), revision),
        '',
    ] + assessment(costs, qualities) + [
        '',
        '## Cost per host',
        '',
        "Nova's own `HostFilterHandler` and `HostWeightHandler` over real "
        '`HostState` objects (10 hosts per PoP). With hints, every request '
        'carries `near`, `max_rtt_ms`, `avoid_pop`, `pop_tag` and '
        '`different_pop_from`, so every filter and weigher of ours does '
        'its full work (the filters keep about two thirds of the hosts, '
        'which the weighers then weigh); without hints the filters pass '
        'every host and the weighers weigh them all by the entry PoP, '
        'energy and image. CPU time (`time.process_time`): the median of '
        '%d runs, each the median of %d interleaved repeats; the machine '
        'is shared, and wall-clock time there mostly measures the other '
        'processes (wall-clock medians below the table). The host states '
        'of a run are made first and then frozen (`gc.freeze()`: the '
        "garbage collector's full collections no longer walk these "
        'long-lived objects, as they would not in a long-running '
        'nova-scheduler, where such objects have long been in the oldest '
        'generation), and each timed run starts after a `gc.collect()`, '
        'untimed: a run pays for the collections its own allocations set '
        'off, not for a full collection the runs before it made due.' % (
            len(costs[0]['runs']), costs[0]['repeats']),
        '',
        '| hosts | Nova defaults + RAMWeigher | ours, hints | ratio per '
        'host (target <= 1.5) | ours, no hints | ratio per host | our '
        'code only, hints / no hints | handlers alone (no-op plugins) | '
        'defaults + ours + RAM |',
        '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for c in costs:
        m = c['median']
        lines.append(
            '| %d | %.1f ms (%.1f us/host) | %.1f ms (%.1f us/host) | '
            '**%.2f** | %.1f ms (%.1f us/host) | **%.2f** | %.1f / %.1f ms '
            '| %.1f ms | %.1f ms |' % (
                c['size'], m['nova'] * 1e3, m['nova'] * 1e6 / c['size'],
                m['ours'] * 1e3, m['ours'] * 1e6 / c['size'], c['ratio'],
                m['ours_nohints'] * 1e3,
                m['ours_nohints'] * 1e6 / c['size'], c['ratio_nohints'],
                m['direct'] * 1e3, m['direct_nohints'] * 1e3,
                m['floor'] * 1e3, m['full'] * 1e3))
    lines += [
        '',
        '"Our code only" makes the calls the handlers make to our plugins '
        '(`filter_all`, `weigh_objects`, `weight_multiplier` of every '
        'host) without the handlers, and times those calls alone: the '
        '`WeighedHost` of each host, which the weight handler makes before '
        'it calls the weighers, is made between them, untimed (with it '
        'and the loops making the calls, hints / no hints: %s). '
        '"Handlers alone" runs the handlers around three filters that '
        'return the list they are given and three '
        'weighers that return weights prepared in advance: what Nova\'s '
        'handlers cost by themselves (per filter they copy the list and '
        'record every host that passed; per weigher they build three '
        'dicts for debug logging, normalise, and ask and format the '
        'multiplier of every host), which no plugin can avoid.%s' % (
            '; '.join(
                '%s hosts %.1f / %.1f ms' % (
                    format(c['size'], ','),
                    c['median']['direct_whole'] * 1e3,
                    c['median']['direct_nohints_whole'] * 1e3)
                for c in costs),
            ''.join(
                ' At %s hosts one filter pass of the handler costs %.1f ms '
                'and one weigher pass %.1f ms (three no-op filters alone '
                '%.1f ms, three no-op weighers alone %.1f ms).' % (
                    format(c['size'], ','),
                    c['median']['floor_filters'] * 1e3 / 3,
                    c['median']['floor_weighers'] * 1e3 / 3,
                    c['median']['floor_filters'] * 1e3,
                    c['median']['floor_weighers'] * 1e3)
                for c in costs if c['size'] == 10000)),
        '',
        'Why the handlers cost that (as read in the code of nova %s), and '
        'what a plugin can do about it: `get_filtered_objects` runs a filter '
        'whenever its `run_filter_for_index(index)` is true, and that '
        'method is given the instance index, not the request, so a filter '
        'cannot tell the handler that a request has no hint for it (ours '
        'already run once per request, so the handler skips them for the '
        'second and later instances of a request). For every filter it '
        'runs, the handler copies the list returned and records a '
        '(host, node) pair for every host that passed, whatever the log '
        'level: a filter that hands its input back unchanged still costs '
        'that. For every weigher, `get_weighed_objects` builds the '
        'arguments of two `LOG.debug` calls (a dict over every host each) '
        'before the calls, so with debug logging off too, normalises, and '
        'for every host asks the multiplier and formats '
        '`f"{multiplier} * {weight}"`; formatting the floats is most of '
        'it. Weights that are equal for every host (ours when a weigher '
        'has nothing to tell hosts apart by) normalise to integer zeros, '
        'which format faster. What would cut the rest is fewer passes: one '
        'filter doing the work of our three would decide exactly as they '
        'do (a host passes when it passes all three) and save two filter '
        'passes; one weigher doing the work of our three could rank as they '
        'do (it would normalise and multiply each part as nova does, sum '
        'them, and answer the spread of that sum as its multiplier, so '
        'that nova\'s own normalisation of it changes every host\'s score '
        'by the same constant) and save two weigher passes. Even so the '
        'handlers would cost one filter pass and one weigher pass, about '
        '43 ms here, before any work. Both change what operators '
        'configure and are not done here; nova is not patched.' % (
            nova_version()),
        '',
        'The requests here carry no context, so our plugins take the PoP '
        'directory from the host states (the PoPs of the aggregates they '
        'read anyway) and find the server of `different_pop_from` by a '
        'lookup in the servers of every host, a pass over the hosts that '
        'nova-scheduler does not make: there the directory is read from '
        'the API database at most every `pop_refresh_interval` seconds and '
        'each named server is one lookup.',
        '',
        'Runs (CPU ms: through the handlers, hints / no hints / handlers '
        'alone; our code only, hints / no hints; load average before the '
        'run over 1, 5 and 15 min, on %d cores):' % (
            os.cpu_count() or 0),
        '',
    ]
    for c in costs:
        lines.append('* %d hosts: %s.' % (c['size'], '; '.join(
            '%.1f / %.1f / %.1f; %.1f / %.1f (load %s)' % (
                r['median']['ours'] * 1e3, r['median']['ours_nohints'] * 1e3,
                r['median']['floor'] * 1e3, r['median']['direct'] * 1e3,
                r['median']['direct_nohints'] * 1e3, r['load'])
            for r in c['runs'])))
    lines += [
        '',
        'Wall-clock medians: %s.' % '; '.join(
            '%d hosts: Nova %.0f ms, ours %.0f ms with hints (ratio %.2f), '
            '%.0f ms without' % (
                c['size'], c['wall']['nova'] * 1e3, c['wall']['ours'] * 1e3,
                c['wall']['ours'] / c['wall']['nova'],
                c['wall']['ours_nohints'] * 1e3) for c in costs),
    ]
    ten_k = [c for c in costs if c['size'] == 10000]
    if ten_k:
        m = ten_k[0]['median']
        lines += ['', 'At 10,000 hosts (target <= 50 ms): our plugins\' '
                  'own code **%.1f ms** with hints, **%.1f ms** without '
                  '(per run: %s); through nova-scheduler\'s handlers '
                  '%.1f and %.1f ms; the handlers alone, around no-op '
                  'plugins that keep every host, %.1f ms; the whole stack '
                  "with Nova's defaults %.1f ms." % (
                      m['direct'] * 1e3, m['direct_nohints'] * 1e3,
                      ', '.join('%.1f / %.1f' % (
                          r['median']['direct'] * 1e3,
                          r['median']['direct_nohints'] * 1e3)
                          for r in ten_k[0]['runs']),
                      m['ours'] * 1e3, m['ours_nohints'] * 1e3,
                      m['floor'] * 1e3, m['full'] * 1e3)]
    q = qualities[0]
    lines += [
        '',
        '## Placement quality on the PlanetLab matrix',
        '',
        '%d of the 490 nodes are PoPs (%d hosts each), the other %d are '
        'clients. Coordinates: the agents\' Vivaldi code run over the '
        'matrix, %d rounds of one random and one near sample per node '
        '(median error estimate %.2f, median measured relative error %.2f).'
        ' Each PoP publishes the RTTs its agent measured to its %d nearest '
        'PoPs (`discovery_rtt`) and, as its client prober does, to the '
        'client prefixes of itself and of its %d nearest PoPs, at most %d '
        '(`discovery_client_rtt:<CIDR>`, %.1f prefixes per PoP on average, '
        'at most %d): the matrix RTT from the PoP node to the client node '
        'stands for the TCP connect time, written through '
        '`PopDescriptor.to_metadata` into the aggregate metadata the '
        'scheduler reads. Per request 30 %% of the PoPs are full '
        'and 20 %% of the other hosts too; the full stack (Nova defaults, '
        'ours, RAM weigher) picks the host. One row per seed (which nodes '
        'are PoPs, which are full).' % (
            q['pops'], HOSTS_PER_POP, q['clients']['requests'],
            q['rounds'], q['median_estimate'], q['median_error'],
            q['near'], q['probe_pops'], q['probe_limit'], q['client_rtts'],
            q['client_rtts_max']),
        '',
        '* *clients*: a client node asks `near_ip=<its address>`; its '
        'prefix maps to its nearest PoP, where the request enters.',
        '* *requesters at PoPs*: a user at a PoP asks without a hint.',
        '* *oracle from entry PoP*: the best any ranking from the entry PoP '
        'alone can do (measured RTTs from the entry PoP instead of '
        'estimates, nothing measured to the client); for clients it is '
        'above 1 because it knows the entry PoP, not where the client is '
        'behind it. It was the bound of the scheduler before PoPs measured '
        'client prefixes; the client ratio is now %s.' % (
            'below it in every seed' if all(
                q['clients']['ratio'] < q['clients']['oracle_ratio']
                for q in qualities) else
            'not below it in every seed'),
        '',
        '| requesters | seed | requests | mean RTT to chosen host | mean RTT '
        'to best feasible host | ratio (target <= 1.05) | oracle from '
        'entry PoP | best host chosen | entry PoP full: requests, ratio |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for label, key in (('requesters at PoPs', 'at_pops'),
                       ('clients', 'clients')):
        for q in qualities:
            r = q[key]
            lines.append('| %s | %d | %d | %.1f ms | %.1f ms | **%.3f** | '
                         '%.3f | %.0f %% | %d, %.3f |' % (
                             label, q['seed'], r['requests'],
                             r['mean_chosen'], r['mean_best'], r['ratio'],
                             r['oracle_ratio'], r['exact'] * 100,
                             r['entry_full'], r['moved_ratio']))
    lines.append('')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+',
                        default=[1000, 10000])
    parser.add_argument('--repeats', type=int, default=7,
                        help='interleaved repeats per cost run')
    parser.add_argument('--cost-runs', type=int, default=3,
                        help='cost runs per size, each on new host states')
    parser.add_argument('--pops', type=int, default=100)
    parser.add_argument('--rounds', type=int, default=1000,
                        help='Vivaldi rounds when fitting coordinates')
    parser.add_argument('--near', type=int, default=8,
                        help='measured RTTs each PoP publishes')
    parser.add_argument('--client-probe-pops', type=int, default=8,
                        help='nearest PoPs whose client prefixes each PoP '
                             'also probes ([discovery_overlay] '
                             'client_probe_pops)')
    parser.add_argument('--client-probe-limit', type=int, default=64,
                        help='client prefixes each PoP probes at most '
                             '([discovery_overlay] client_probe_limit)')
    parser.add_argument('--seed', type=int, default=1,
                        help='seed of the cost scenario')
    parser.add_argument('--quality-seeds', type=int, nargs='+',
                        default=[1, 2, 3])
    parser.add_argument('--no-write', action='store_true')
    args = parser.parse_args(argv)
    revision = source_revision()
    objects.register_all()
    CONF([], project='nova', default_config_files=[])
    # The services of the host states reported once, when they were made;
    # on a busy machine a cost run can outlast the default 60 s after
    # which ComputeFilter would take them for down.
    CONF.set_override('service_down_time', 24 * 3600)
    rng = random.Random(args.seed)
    costs = []
    for size in args.sizes:
        runs = []
        for run in range(args.cost_runs):
            cost = bench_cost(size, args.repeats, rng)
            runs.append(cost)
            m = cost['median']
            print('%d hosts, run %d (CPU ms): nova %.1f, ours %.1f, ours '
                  'without hints %.1f, ours direct %.1f / %.1f, handlers '
                  'alone %.1f, full %.1f; wall: nova %.1f, ours %.1f; '
                  'survivors %s; load %s' % (
                      size, run + 1, m['nova'] * 1e3, m['ours'] * 1e3,
                      m['ours_nohints'] * 1e3, m['direct'] * 1e3,
                      m['direct_nohints'] * 1e3, m['floor'] * 1e3,
                      m['full'] * 1e3, cost['wall']['nova'] * 1e3,
                      cost['wall']['ours'] * 1e3, cost['survivors'],
                      cost['load']))
        cost = combine(runs)
        cost['repeats'] = args.repeats
        costs.append(cost)
        m = cost['median']
        print('%d hosts, median of %d runs (CPU ms): nova %.1f, ours %.1f '
              '(ratio %.2f), ours without hints %.1f (ratio %.2f), handlers '
              'alone %.1f' % (size, len(runs), m['nova'] * 1e3,
                              m['ours'] * 1e3, cost['ratio'],
                              m['ours_nohints'] * 1e3,
                              cost['ratio_nohints'], m['floor'] * 1e3))
    qualities = []
    for seed in args.quality_seeds:
        quality = bench_quality(random.Random(seed), pop_count=args.pops,
                                rounds=args.rounds, near=args.near,
                                probe_pops=args.client_probe_pops,
                                probe_limit=args.client_probe_limit)
        quality['seed'] = seed
        qualities.append(quality)
        for key in ('clients', 'at_pops'):
            r = quality[key]
            print('quality seed %d (%s): %d requests, mean chosen %.1f ms, '
                  'mean best %.1f ms, ratio %.3f, oracle %.3f, exact %.0f '
                  '%%, entry full %d (ratio %.3f)' % (
                      seed, key, r['requests'], r['mean_chosen'],
                      r['mean_best'], r['ratio'], r['oracle_ratio'],
                      r['exact'] * 100, r['entry_full'], r['moved_ratio']))
        print('coordinates: median error estimate %.2f, measured %.2f; '
              'client prefixes measured per PoP: %.1f on average, at most '
              '%d' % (quality['median_estimate'], quality['median_error'],
                      quality['client_rtts'], quality['client_rtts_max']))
    if not args.no_write:
        with open(OUT, 'w') as stream:
            stream.write(render(costs, qualities, sys.argv[1:], revision))
        print('wrote %s' % os.path.normpath(OUT))
    return 0


if __name__ == '__main__':
    sys.exit(main())
