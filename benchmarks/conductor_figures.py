"""Figures of the decentralized conductor (issue #5) on a real local cloud.

Brings up its own ``discovery-nova cloud`` (3 PoPs, the p2p federation,
``discovery-conductor``, emulated WAN delays from the PlanetLab matrix) in
a temporary state directory on a free block of ports, and always brings it
down at the end, on failure and on Ctrl-C too. Then, with openstacksdk
against the PoPs' nova APIs:

1. latency: create -> ACTIVE as seen from the first (most central) PoP's
   API, for servers that boot there (no hint) and for servers sent with
   ``near=<farthest PoP>`` (forwarded, they run there), interleaved one
   at a time; median and p90 of each, the matrix RTT on the path, and
   the target: forwarded median <= 1.5 x local median + RTT on the path;
2. boot storm: the first PoP filled to capacity, then ``--storm`` servers
   created concurrently round-robin over the PoPs' APIs; every one must
   end ACTIVE or ERROR (with a fault) before a deadline; where they run,
   how many were forwarded, the faults, wall time and creates/s;
3. memory: the RSS of every process of every service after start and
   after the storm.

Everything created is deleted (and waited for) between the phases. Prints
a table and writes a JSON report (``doc/source/benchmarks/conductor/
report.json``; ``--quick``: small sizes, report in the temporary
directory). Run: ``.venv/bin/python benchmarks/conductor_figures.py``.
"""

import argparse
import collections
import concurrent.futures
import configparser
import datetime
import hashlib
import json
import math
import os
from pathlib import Path
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DOC_REPORT = REPO / 'doc' / 'source' / 'benchmarks' / 'conductor' / \
    'report.json'
CLOUD_NAME = 'discovery'
FLAVOR = 'dn.tiny'
IMAGE = 'discovery-tiny'
#: Seconds between two looks at a server while timing one boot.
POLL = 0.2
#: Seconds between two listings of every PoP while waiting for many.
LIST_POLL = 2.0
#: Seconds after its creates by which a fill round must be settled.
FILL_DEADLINE = 600.0
#: nova's microversion for ``networks: none`` on create.
MICROVERSION = '2.37'


class BenchmarkError(RuntimeError):
    """The cloud or a phase did not behave; the message says how."""


def _interrupt(signum, frame):
    raise KeyboardInterrupt('signal %d' % signum)


def _log(message: str) -> None:
    print('[%s] %s' % (time.strftime('%H:%M:%S'), message), flush=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def spread(values: list[float]) -> dict:
    if not values:
        return {'n': 0}
    return {'n': len(values), 'median': statistics.median(values),
            'p90': percentile(values, 90), 'min': min(values),
            'max': max(values), 'values': [round(v, 3) for v in values]}


def free_base_port(pops: int) -> int:
    """A base port whose whole block of ports is free on 127.0.0.1.

    Starts at a random block so that two runs on one machine (or a test
    cloud) are unlikely to pick the same one at the same moment.
    """
    from discovery_nova.cloud import layout as layout_mod

    blocks = list(range(32000, 60000, 500))
    start = random.randrange(len(blocks))
    for base in blocks[start:] + blocks[:start]:
        layout = layout_mod.make_layout(pops, base)
        if not layout_mod.taken_ports(layout):
            return base
    raise BenchmarkError('no free block of ports on 127.0.0.1')


def cloud_argv(state_dir: Path, *args: str) -> list[str]:
    return [sys.executable, '-m', 'discovery_nova.cloud', 'cloud',
            '--state-dir', str(state_dir)] + list(args)


class BenchCloud:
    """One local cloud of our own: up, connections per PoP, down."""

    def __init__(self, state_dir: Path, pops: int, compute_size: str,
                 base_port: int | None = None, database: str = 'sqlite'):
        self.state_dir = state_dir
        self.pops = pops
        self.compute_size = compute_size
        self.database = database
        self.base_port = base_port
        self.settings = None
        self.names: list[str] = []
        self.rtts: dict[str, dict[str, float]] = {}
        self._local = threading.local()
        self._config = None
        self._up_proc = None

    # -- life cycle ---------------------------------------------------------

    def up(self, timeout: float) -> float:
        """``cloud up``, its progress echoed; seconds it took."""
        from discovery_nova.cloud import pop_registry
        from discovery_nova.cloud import settings as settings_mod
        from discovery_nova.sim.topology import PlanetLabTopology

        if self.base_port is None:
            self.base_port = free_base_port(self.pops)
        argv = cloud_argv(self.state_dir, 'up', '--pops', str(self.pops),
                          '--base-port', str(self.base_port),
                          '--compute-size', self.compute_size,
                          '--database', self.database,
                          '--clouds-yaml', 'none',
                          '--timeout', str(timeout))
        _log('cloud up: %s' % ' '.join(argv[3:]))
        started = time.monotonic()
        # Its own session: a Ctrl-C reaches us only, and we stop it
        # (SIGINT lets the launcher stop what it had started).
        self._up_proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True)
        output = []
        for line in self._up_proc.stdout:
            output.append(line)
            print('    | ' + line.rstrip(), flush=True)
        code = self._up_proc.wait()
        self._up_proc = None
        if code != 0:
            raise BenchmarkError('cloud up failed (exit %d): %s'
                                 % (code, ''.join(output[-5:]).strip()))
        seconds = time.monotonic() - started
        self.settings = settings_mod.CloudSettings.load(self.state_dir)
        self.names = [pop.name for pop in self.settings.layout.pops]
        self.rtts = pop_registry.measured_rtts(self.settings.layout,
                                               PlanetLabTopology())
        return seconds

    def stop_up(self) -> None:
        """Interrupt a ``cloud up`` still running."""
        proc = self._up_proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def down(self) -> bool:
        """``cloud down``; True when it reported success."""
        if not (self.state_dir / 'run').exists():
            return True
        _log('cloud down')
        try:
            done = subprocess.run(
                cloud_argv(self.state_dir, 'down'), capture_output=True,
                text=True, timeout=300, start_new_session=True,
                check=False)
        except subprocess.TimeoutExpired:
            _log('cloud down did not finish in 300 s')
            return False
        for line in (done.stdout + done.stderr).splitlines():
            print('    | ' + line, flush=True)
        return done.returncode == 0

    # -- API access -----------------------------------------------------------

    def conn(self, pop: str):
        """This thread's openstacksdk connection to ``pop``'s APIs."""
        from openstack import config as os_config
        from openstack import connection

        cache = getattr(self._local, 'conns', None)
        if cache is None:
            cache = self._local.conns = {}
        if pop not in cache:
            if self._config is None:
                # The cloud's own clouds.yaml only, no OS_* variables.
                self._config = os_config.OpenStackConfig(
                    config_files=[str(self.state_dir / 'clouds.yaml')],
                    vendor_files=[], load_envvars=False)
            region = self._config.get_one(cloud=CLOUD_NAME,
                                          region_name=pop)
            cache[pop] = connection.Connection(config=region)
        return cache[pop]

    def list_servers(self, pop: str) -> list[dict]:
        """Every server ``pop``'s API lists, as nova's JSON (one call)."""
        response = self.conn(pop).compute.get(
            '/servers/detail', microversion=MICROVERSION)
        if response.status_code != 200:
            raise BenchmarkError('GET /servers/detail at %s: HTTP %d %s'
                                 % (pop, response.status_code,
                                    response.text[:200]))
        return response.json()['servers']

    def get_server(self, pop: str, uuid: str) -> dict | None:
        response = self.conn(pop).compute.get(
            '/servers/%s' % uuid, microversion=MICROVERSION)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise BenchmarkError('GET /servers/%s at %s: HTTP %d %s'
                                 % (uuid, pop, response.status_code,
                                    response.text[:200]))
        return response.json()['server']

    def create_server(self, pop: str, name: str,
                      hints: dict | None = None) -> str:
        compute = self.conn(pop).compute
        flavor = compute.find_flavor(FLAVOR, ignore_missing=False)
        image = self.conn(pop).image.find_image(IMAGE, ignore_missing=False)
        server = compute.create_server(
            name=name, flavor_id=flavor.id, image_id=image.id,
            networks='none', scheduler_hints=hints or {})
        return server.id

    def delete_server(self, pop: str, uuid: str) -> None:
        self.conn(pop).compute.delete_server(uuid, ignore_missing=True)

    def flavor_fits(self) -> int:
        """How many ``FLAVOR`` servers one PoP holds (vCPU and RAM)."""
        flavor = self.conn(self.names[0]).compute.find_flavor(
            FLAVOR, ignore_missing=False)
        per_compute = min(self.settings.compute_vcpus // flavor.vcpus,
                          self.settings.compute_ram_mb // flavor.ram)
        return per_compute * self.settings.computes_per_pop

    # -- processes ------------------------------------------------------------

    def memory(self) -> dict:
        """RSS of every process of every service, in total and by kind."""
        from discovery_nova.cloud.supervisor import Supervisor
        from discovery_nova.cloud.supervisor import group_members

        page = os.sysconf('SC_PAGE_SIZE')
        records = Supervisor(self.state_dir / 'run',
                             self.state_dir / 'logs').records()
        by_kind: dict[str, float] = collections.defaultdict(float)
        total = processes = 0
        for name, record in records.items():
            kind = name.split('/', 1)[-1]
            if '/' in name and kind not in ('nova-api', 'nova-conductor',
                                            'nova-scheduler', 'placement'):
                kind = 'nova-compute'  # named after its host
            for pid in group_members(record.pid):
                try:
                    with open('/proc/%d/statm' % pid) as src:
                        rss = int(src.read().split()[1]) * page
                except OSError:
                    continue
                total += rss
                processes += 1
                by_kind[kind] += rss
        return {'services': len(records), 'processes': processes,
                'total_mib': round(total / 2 ** 20, 1),
                'by_kind_mib': {k: round(v / 2 ** 20, 1)
                                for k, v in sorted(by_kind.items())}}

    def scan_logs(self, limit: int = 8) -> dict:
        """ERROR lines, tracebacks and RPC timeouts in every service log.

        ``rpc_timeouts`` counts lines naming MessagingTimeout: a compute
        whose calls to its conductor time out (the conductor's RPC threads
        all taken) is how servers got stuck in BUILD. ``busy_answers``
        counts the offers a PoP answered "busy" (logged by the origin).
        """
        found = {}
        for path in sorted((self.state_dir / 'logs').glob('*.log')):
            errors = []
            tracebacks = timeouts = busy = 0
            with open(path, errors='replace') as src:
                for line in src:
                    if 'MessagingTimeout' in line:
                        timeouts += 1
                    if ' is busy: ' in line:
                        busy += 1
                    if ' ERROR ' in line or ' CRITICAL ' in line:
                        errors.append(line.rstrip()[:400])
                    elif line.startswith('Traceback'):
                        tracebacks += 1
            if errors or tracebacks or timeouts or busy:
                found[path.name] = {'error_lines': len(errors),
                                    'tracebacks': tracebacks,
                                    'rpc_timeouts': timeouts,
                                    'busy_answers': busy,
                                    'first': errors[:limit]}
        return found


# -- waiting for servers ------------------------------------------------------

def wait_final(cloud: BenchCloud, origin: dict[str, str],
               created_at: dict[str, float], deadline: float,
               label: str) -> dict[str, dict]:
    """Poll the origin PoPs until every server of ``origin`` (uuid ->
    PoP it was created at) is ACTIVE or ERROR, or ``deadline`` passes.

    Returns uuid -> {status, az, fault, seconds (create -> final, as seen
    by the listing), stuck}.
    """
    pending = set(origin)
    final: dict[str, dict] = {}
    last: dict[str, dict] = {}
    next_report = time.monotonic() + 15
    while pending and time.monotonic() < deadline:
        for pop in sorted({origin[u] for u in pending}):
            try:
                listed = {s['id']: s for s in cloud.list_servers(pop)}
            except Exception as exc:  # a busy API: try again next round
                _log('%s: listing at %s failed: %s' % (label, pop, exc))
                continue
            now = time.monotonic()
            for uuid in [u for u in pending if origin[u] == pop]:
                server = listed.get(uuid)
                if server is None:
                    continue
                last[uuid] = server
                if server['status'] in ('ACTIVE', 'ERROR'):
                    fault = server.get('fault')
                    if server['status'] == 'ERROR' and not fault:
                        fault = (cloud.get_server(pop, uuid) or {}).get(
                            'fault')
                    final[uuid] = _outcome(server, fault,
                                           now - created_at[uuid])
                    pending.discard(uuid)
        if time.monotonic() >= next_report:
            states = collections.Counter(
                last[u]['status'] if u in last else 'not listed'
                for u in pending)
            done = collections.Counter(f['status'] for f in final.values())
            _log('%s: %s done, still %s'
                 % (label, dict(done), dict(states)))
            next_report = time.monotonic() + 15
        if pending:
            time.sleep(LIST_POLL)
    for uuid in pending:
        server = last.get(uuid)
        final[uuid] = {
            'status': server['status'] if server else 'NOT LISTED',
            'task_state': (server or {}).get('OS-EXT-STS:task_state'),
            'az': (server or {}).get('OS-EXT-AZ:availability_zone'),
            'origin': origin[uuid], 'stuck': True, 'fault': None,
            'seconds': None}
    return final


def _outcome(server: dict, fault: dict | None, seconds: float) -> dict:
    return {'status': server['status'],
            'az': server.get('OS-EXT-AZ:availability_zone'),
            'pop_meta': (server.get('metadata') or {}).get('discovery_pop'),
            'fault': (fault or {}).get('message'),
            'seconds': seconds, 'stuck': False}


def create_many(cloud: BenchCloud, jobs: list[tuple[str, str, dict]],
                workers: int, label: str) -> tuple[dict, dict, list, float]:
    """Create the servers of ``jobs`` ((pop, name, hints)) from a pool of
    ``workers`` threads. Returns (uuid -> origin PoP, uuid -> monotonic
    time of the create call, failed creates, seconds to issue them all).
    """
    origin: dict[str, str] = {}
    created_at: dict[str, float] = {}
    failures = []
    lock = threading.Lock()
    started = time.monotonic()

    def one(job):
        pop, name, hints = job
        t0 = time.monotonic()
        try:
            uuid = cloud.create_server(pop, name, hints)
        except Exception as exc:
            with lock:
                failures.append({'pop': pop, 'name': name,
                                 'error': str(exc)[:300]})
            return
        with lock:
            origin[uuid] = pop
            created_at[uuid] = t0
            done = len(origin) + len(failures)
        if done % 20 == 0:
            _log('%s: %d/%d create calls answered' % (label, done,
                                                      len(jobs)))

    pool = concurrent.futures.ThreadPoolExecutor(workers)
    try:
        list(pool.map(one, jobs))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return origin, created_at, failures, time.monotonic() - started


def delete_everything(cloud: BenchCloud, workers: int, timeout: float,
                      grace: float = 120.0) -> dict:
    """Delete every server at its origin PoP and wait until no PoP lists
    any (see :func:`delete_and_wait`)."""
    targets = []
    for pop in cloud.names:
        for server in cloud.list_servers(pop):
            meta = server.get('metadata') or {}
            if meta.get('discovery_origin') in (None, pop):
                targets.append((pop, server['id']))
    return delete_and_wait(cloud, targets, workers, timeout, grace)


def delete_and_wait(cloud: BenchCloud, targets: list[tuple[str, str]],
                    workers: int, timeout: float, grace: float = 120.0,
                    only: set[str] | None = None) -> dict:
    """Delete ``targets`` ((origin PoP, uuid)) and wait until no PoP lists
    any server (or, with ``only``, any of those uuids).

    Servers a PoP still lists ``grace`` seconds after their origin deleted
    its record (the deletion was not carried over, or the origin never
    had a record of them) are deleted where they are listed, and reported.
    """
    started = time.monotonic()
    _log('cleanup: deleting %d servers at their origin' % len(targets))
    pool = concurrent.futures.ThreadPoolExecutor(workers)
    try:
        list(pool.map(lambda t: cloud.delete_server(*t), targets))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    issued = time.monotonic()
    direct = []
    next_report = issued + 15
    while True:
        left = {pop: [s for s in cloud.list_servers(pop)
                      if only is None or s['id'] in only]
                for pop in cloud.names}
        count = sum(len(v) for v in left.values())
        if not count:
            break
        now = time.monotonic()
        if now > started + timeout:
            raise BenchmarkError(
                'cleanup: %d servers still listed after %.0f s: %s'
                % (count, timeout, {p: [(s['id'], s['status']) for s in v]
                                    for p, v in left.items() if v}))
        if now >= next_report:
            _log('cleanup: still listed: %s'
                 % {p: len(v) for p, v in left.items() if v})
            next_report = now + 15
        if not direct and now > issued + grace:
            for pop, servers in left.items():
                for server in servers:
                    meta = server.get('metadata') or {}
                    direct.append({
                        'id': server['id'], 'listed_at': pop,
                        'name': server['name'], 'status': server['status'],
                        'origin': meta.get('discovery_origin')})
                    cloud.delete_server(pop, server['id'])
            _log('cleanup: %d servers still listed %.0f s after their '
                 'origin deleted them; deleted where listed: %s'
                 % (len(direct), grace, direct))
        time.sleep(LIST_POLL)
    seconds = time.monotonic() - started
    _log('cleanup: none of them listed any more (%.1f s)' % seconds)
    return {'deleted_at_origin': len(targets),
            'seconds': round(seconds, 1),
            'left_over_deleted_where_listed': direct}


def find_orphans(cloud: BenchCloud, origin: dict[str, str],
                 final: dict[str, dict]) -> list[dict]:
    """Servers of ``origin`` listed at a PoP that their origin's record
    does not name as their zone: they run there unknown to the user
    (e.g. the origin gave up waiting for that PoP and buried them)."""
    orphans = []
    for pop in cloud.names:
        for server in cloud.list_servers(pop):
            uuid = server['id']
            if uuid not in origin or origin[uuid] == pop:
                continue
            seen = final.get(uuid, {})
            if seen.get('az') == pop:
                continue  # the origin knows, whatever the state
            orphans.append({'id': uuid, 'name': server['name'],
                            'runs_at': pop, 'status_there': server['status'],
                            'origin': origin[uuid],
                            'status_at_origin': seen.get('status'),
                            'az_at_origin': seen.get('az'),
                            'fault_at_origin': seen.get('fault')})
    return orphans


# -- phase 1: latency ---------------------------------------------------------

def time_one_boot(cloud: BenchCloud, origin: str, name: str, hints: dict,
                  where: str, timeout: float) -> dict:
    """Create one server at ``origin``; poll it there (and at ``where``,
    the PoP it should run at, when another) every POLL seconds."""
    t0 = time.monotonic()
    uuid = cloud.create_server(origin, name, hints)
    accepted = time.monotonic() - t0
    seen_there = None
    deadline = t0 + timeout
    server = None
    while time.monotonic() < deadline:
        server = cloud.get_server(origin, uuid)
        now = time.monotonic()
        if server is not None and server['status'] in ('ACTIVE', 'ERROR'):
            break
        if where != origin and seen_there is None:
            remote = cloud.get_server(where, uuid)
            if remote is not None and remote['status'] == 'ACTIVE':
                seen_there = time.monotonic() - t0
        time.sleep(POLL)
    else:
        return {'id': uuid, 'status': (server or {}).get('status'),
                'stuck': True, 'seconds': None}
    return {'id': uuid, 'status': server['status'],
            'seconds': now - t0, 'api_accept_seconds': accepted,
            'active_where_it_runs_seconds': seen_there,
            'az': server.get('OS-EXT-AZ:availability_zone'),
            'fault': (server.get('fault') or {}).get('message'),
            'stuck': False}


def phase_latency(cloud: BenchCloud, count: int, timeout: float) -> dict:
    first = cloud.names[0]
    far = max(cloud.rtts[first], key=cloud.rtts[first].get)
    rtt = cloud.rtts[first][far]
    _log('latency: %d local boots at %s, %d forwarded %s -> %s '
         '(near=%s, matrix RTT %.1f ms), interleaved'
         % (count, first, count, first, far, far, rtt))
    local, forwarded = [], []
    for i in range(count):
        one = time_one_boot(cloud, first, 'lat-local-%d' % i, {}, first,
                            timeout)
        local.append(one)
        two = time_one_boot(cloud, first, 'lat-fwd-%d' % i, {'near': far},
                            far, timeout)
        forwarded.append(two)
        _log('latency %d/%d: local %s %.2f s, forwarded %s %.2f s (AZ %s)'
             % (i + 1, count, one['status'], one['seconds'] or -1,
                two['status'], two['seconds'] or -1, two.get('az')))
    problems = []
    for kind, runs, pop in (('local', local, first),
                            ('forwarded', forwarded, far)):
        for run in runs:
            if run['stuck'] or run['status'] != 'ACTIVE' or \
                    run.get('az') != pop:
                problems.append(dict(run, kind=kind, expected_az=pop))
    ok_local = [r['seconds'] for r in local
                if r['status'] == 'ACTIVE' and not r['stuck']]
    ok_fwd = [r['seconds'] for r in forwarded
              if r['status'] == 'ACTIVE' and not r['stuck']]
    there = [r['active_where_it_runs_seconds'] for r in forwarded
             if r.get('active_where_it_runs_seconds') is not None]
    result = {'origin': first, 'forwarded_to': far, 'count': count,
              'path': [first, far], 'path_rtt_ms': rtt,
              'local': spread(ok_local), 'forwarded': spread(ok_fwd),
              'forwarded_active_where_it_runs': spread(there),
              'api_accept_local': spread(
                  [r['api_accept_seconds'] for r in local
                   if 'api_accept_seconds' in r]),
              'api_accept_forwarded': spread(
                  [r['api_accept_seconds'] for r in forwarded
                   if 'api_accept_seconds' in r]),
              'runs': {'local': local, 'forwarded': forwarded},
              'problems': problems}
    if ok_local and ok_fwd:
        bound = 1.5 * result['local']['median'] + rtt / 1000.0
        result['target'] = {
            'bound_seconds': bound,
            'forwarded_median_seconds': result['forwarded']['median'],
            'met': result['forwarded']['median'] <= bound}
    return result


# -- phase 2: boot storm ------------------------------------------------------

def fill_pop(cloud: BenchCloud, pop: str, capacity: int, workers: int,
             deadline_s: float, rounds: int = 4) -> dict:
    """Boot ``FLAVOR`` servers at ``pop`` until it runs ``capacity``.

    Concurrent boots at one PoP make its placement (sqlite) answer 500
    to claims, and the PoP then forwards or refuses servers it has room
    for: the fill goes through ``workers`` threads (1 by default). The
    boots that still fail, stick or are forwarded are deleted and replaced,
    for up to ``rounds`` rounds, so that the storm meets a full PoP.
    """
    kept = 0
    serial = 0
    history = []
    for round_ in range(1, rounds + 1):
        need = capacity - kept
        if need <= 0:
            break
        _log('fill: round %d, %d %s at %s' % (round_, need, FLAVOR, pop))
        jobs = [(pop, 'fill-%03d' % (serial + i), {}) for i in range(need)]
        serial += need
        origin, created_at, failures, _ = create_many(cloud, jobs, workers,
                                                      'fill')
        final = wait_final(cloud, origin, created_at,
                           time.monotonic() + deadline_s, 'fill')
        extra = [u for u, f in final.items()
                 if f['status'] != 'ACTIVE' or f['az'] != pop]
        kept += len(final) - len(extra)
        outcomes = collections.Counter(
            '%s at %s' % (f['status'], f['az']) for f in final.values())
        faults = collections.Counter(
            f['fault'] for f in final.values() if f['status'] == 'ERROR')
        stuck = [{'id': u, 'origin': pop, 'status': f['status'],
                  'task_state': f.get('task_state'), 'az': f['az']}
                 for u, f in final.items() if f['stuck']]
        history.append({'round': round_, 'created': len(origin),
                        'create_failures': failures,
                        'outcomes': dict(outcomes),
                        'faults': dict(faults.most_common()),
                        'stuck': stuck})
        _log('fill: round %d: %s' % (round_, dict(outcomes)))
        if extra:
            history[-1]['removed'] = delete_and_wait(
                cloud, [(pop, u) for u in extra], workers, 900,
                only=set(extra))
    return {'pop': pop, 'capacity': capacity, 'active_at_pop': kept,
            'full': kept == capacity, 'workers': workers,
            'rounds': history}


def phase_storm(cloud: BenchCloud, storm: int, workers: int,
                deadline_s: float, fill_workers: int = 1) -> dict:
    first = cloud.names[0]
    capacity = cloud.flavor_fits()
    fill_summary = fill_pop(cloud, first, capacity, fill_workers,
                            min(deadline_s, FILL_DEADLINE))
    if not fill_summary['full']:
        _log('storm: %s runs %d of %d: not full, storming anyway'
             % (first, fill_summary['active_at_pop'], capacity))

    _log('storm: %d creates round-robin over %s, %d threads'
         % (storm, ', '.join(cloud.names), workers))
    jobs = [(cloud.names[i % len(cloud.names)], 'storm-%03d' % i, {})
            for i in range(storm)]
    t0 = time.monotonic()
    origin, created_at, failures, issue_s = create_many(cloud, jobs,
                                                        workers, 'storm')
    final = wait_final(cloud, origin, created_at,
                       time.monotonic() + deadline_s, 'storm')
    wall = time.monotonic() - t0
    # When the last server that did settle settled (the wall time also
    # holds the wait for any stuck one until the deadline).
    settled = max((created_at[u] + f['seconds'] - t0
                   for u, f in final.items() if not f['stuck']),
                  default=None)
    orphans = find_orphans(cloud, origin, final)
    if orphans:
        _log('storm: %d servers run where their origin does not record '
             'them: %s' % (len(orphans), orphans))
    return dict(summarise_storm(cloud, origin, final, failures),
                fill=fill_summary, requested=storm, workers=workers,
                orphans=orphans, issue_seconds=round(issue_s, 1),
                creates_per_s=round(len(origin) / issue_s, 2),
                wall_seconds=round(wall, 1),
                last_settled_seconds=(round(settled, 1)
                                      if settled is not None else None),
                deadline_seconds=deadline_s)


#: One PoP's answer in a refusal: "pl023 (~107 ms away): reason".
ANSWER = re.compile(r'(\S+) \((?:this PoP|~\d+ ms away|RTT unknown)\): '
                    r'([^;]*)')
#: nova keeps 255 characters of a fault message (instance_faults).
FAULT_LIMIT = 255


def summarise_faults(faults: list[str | None], pops: list[str]) -> dict:
    """Refusals (every PoP tried) by what each PoP answered; the rest
    by message."""
    refusals = naming_all = with_timeout = 0
    answers = collections.Counter()
    others = collections.Counter()
    for message in faults:
        if not message or 'No PoP could place the server' not in message:
            text = re.sub(r'[0-9a-f]{8}-[0-9a-f-]{27}', '<uuid>',
                          message or '(no fault)')
            others[text] += 1
            continue
        refusals += 1
        if all(p in message for p in pops):
            naming_all += 1
        if 'no answer within' in message:
            with_timeout += 1
        found = ANSWER.findall(message)
        for i, (_, reason) in enumerate(found):
            reason = reason.strip()
            if i == len(found) - 1 and len(message) >= FAULT_LIMIT and \
                    not reason.endswith('.') and \
                    not reason.startswith('no answer'):
                reason = '(cut: fault kept to %d characters)' % FAULT_LIMIT
            elif reason.startswith('No valid host'):
                reason = 'No valid host was found.'
            answers[reason] += 1
    return {'refusals': refusals, 'refusals_naming_every_pop': naming_all,
            'refusals_with_a_pop_not_answering': with_timeout,
            'answers_in_refusals': dict(answers.most_common()),
            'other_faults': dict(others.most_common())}


def summarise_storm(cloud: BenchCloud, origin: dict, final: dict,
                    failures: list) -> dict:
    pops = cloud.names
    active_at = collections.Counter()
    by_origin = collections.Counter()
    errors, stuck = [], []
    for uuid, out in final.items():
        if out['stuck']:
            stuck.append({'id': uuid, 'origin': origin[uuid],
                          'status': out['status'],
                          'task_state': out.get('task_state'),
                          'az': out.get('az')})
        elif out['status'] == 'ACTIVE':
            active_at[out['az']] += 1
            by_origin['%s -> %s' % (origin[uuid], out['az'])] += 1
        else:
            errors.append({'id': uuid, 'origin': origin[uuid],
                           'fault': out['fault']})
    active_s = [f['seconds'] for f in final.values()
                if f['status'] == 'ACTIVE' and not f['stuck']]
    forwarded = sum(n for k, n in by_origin.items()
                    if k.split(' -> ')[0] != k.split(' -> ')[1])
    return {'created': len(origin), 'create_failures': failures,
            'active': sum(active_at.values()),
            'active_by_pop': dict(sorted(active_at.items())),
            'active_by_origin_and_pop': dict(sorted(by_origin.items())),
            'forwarded': forwarded,
            'error': len(errors),
            'faults': summarise_faults([e['fault'] for e in errors], pops),
            'errors_without_fault': sum(1 for e in errors
                                        if not e['fault']),
            'error_servers': errors, 'stuck': stuck,
            'create_to_active': spread(active_s)}


# -- report -------------------------------------------------------------------

def _fmt(spread_: dict, key: str) -> str:
    return '%.2f s' % spread_[key] if spread_.get('n') else '-'


def print_table(report: dict) -> None:
    print()
    print('Conductor figures (%s)' % ', '.join(
        '%s=%s' % (k, report['cloud'].get(k)) for k in
        ('pops', 'compute_size', 'database', 'transport', 'conductor')))
    options = report['cloud'].get('discovery_conductor')
    if options:
        print('[discovery_conductor] %s' % ', '.join(
            '%s = %s' % kv for kv in sorted(options.items())))
    lat = report.get('latency')
    if lat:
        print('\n1. create -> ACTIVE seen from %s (%d each, interleaved)'
              % (lat['origin'], lat['count']))
        print('   %-34s %9s %9s %9s %9s' % ('', 'median', 'p90', 'min',
                                           'max'))
        rows = (('local (runs at %s)' % lat['origin'], lat['local']),
                ('forwarded (near=%s)' % lat['forwarded_to'],
                 lat['forwarded']),
                ('  ACTIVE at %s API' % lat['forwarded_to'],
                 lat['forwarded_active_where_it_runs']))
        for label, s in rows:
            print('   %-34s %9s %9s %9s %9s' % (
                label, _fmt(s, 'median'), _fmt(s, 'p90'), _fmt(s, 'min'),
                _fmt(s, 'max')))
        print('   RTT on the path %s: %.1f ms (matrix)'
              % (' -> '.join(lat['path']), lat['path_rtt_ms']))
        target = lat.get('target')
        if target:
            print('   target forwarded median <= 1.5 x local median + '
                  'RTT = %.2f s: %.2f s, %s'
                  % (target['bound_seconds'],
                     target['forwarded_median_seconds'],
                     'MET' if target['met'] else 'NOT MET'))
        if lat['problems']:
            print('   problems: %s' % lat['problems'])
    storm = report.get('storm')
    if storm:
        fill = storm['fill']
        print('\n2. boot storm: %d servers, %d threads round-robin over '
              'the PoPs; %s filled first (%d thread(s)): %d of %d %s in %d '
              'round(s)'
              % (storm['requested'], storm['workers'], fill['pop'],
                 fill['workers'], fill['active_at_pop'], fill['capacity'],
                 FLAVOR,
                 len(fill['rounds'])))
        for item in fill['rounds']:
            print('   fill round %d: %s' % (item['round'], ', '.join(
                '%s: %d' % kv for kv in item['outcomes'].items())))
            for one in item['stuck']:
                print('   STUCK (fill): %s' % one)
        print('   created %d (create calls failed: %d), ACTIVE %d, '
              'ERROR %d, stuck %d'
              % (storm['created'], len(storm['create_failures']),
                 storm['active'], storm['error'], len(storm['stuck'])))
        print('   ACTIVE where they run: %s' % ', '.join(
            '%s %d' % kv for kv in storm['active_by_pop'].items()))
        print('   origin -> PoP: %s' % ', '.join(
            '%s: %d' % kv
            for kv in storm['active_by_origin_and_pop'].items()))
        faults = storm['faults']
        print('   forwarded %d; ERROR: %d refusals (every PoP tried), %d of '
              'them naming every PoP, %d with a PoP that did not answer'
              % (storm['forwarded'], faults['refusals'],
                 faults['refusals_naming_every_pop'],
                 faults['refusals_with_a_pop_not_answering']))
        print('   answers in the refusals: %s' % ', '.join(
            '%s x %d' % kv for kv in faults['answers_in_refusals'].items()))
        for fault, n in faults['other_faults'].items():
            print('   other fault, %d x: %s' % (n, fault[:300]))
        for orphan in storm['orphans']:
            print('   ORPHAN: %s runs at %s (%s) but is %s at its origin '
                  '%s (zone %s)'
                  % (orphan['id'], orphan['runs_at'],
                     orphan['status_there'], orphan['status_at_origin'],
                     orphan['origin'], orphan['az_at_origin']))
        s = storm['create_to_active']
        print('   last server settled %s s after the first create (wall '
              'with the wait for stuck ones: %.1f s); creates issued in '
              '%.1f s (%.2f creates/s accepted by the APIs); create -> '
              'ACTIVE median %s, p90 %s'
              % (storm.get('last_settled_seconds'), storm['wall_seconds'],
                 storm['issue_seconds'], storm['creates_per_s'],
                 _fmt(s, 'median'), _fmt(s, 'p90')))
        for item in storm['stuck']:
            print('   STUCK: %s' % item)
    mem = report.get('memory', {})
    if mem:
        print('\n3. memory of the whole cloud (RSS)')
        for when, m in mem.items():
            print('   %-12s %8.1f MiB in %d processes of %d services (%s)'
                  % (when, m['total_mib'], m['processes'], m['services'],
                     ', '.join('%s %.0f' % kv
                               for kv in m['by_kind_mib'].items())))
    for phase in ('cleanup_latency', 'cleanup_storm'):
        left = (report.get(phase) or {}).get(
            'left_over_deleted_where_listed')
        if left:
            print('\n%s: %d servers not deleted by their origin\'s '
                  'delete, deleted where listed: %s'
                  % (phase, len(left), left))
    if report.get('log_errors'):
        print('\nERROR lines in service logs:')
        for name, found in report['log_errors'].items():
            print('   %s: %d ERROR lines, %d tracebacks, %d lines naming '
                  'MessagingTimeout, %d busy answers'
                  % (name, found['error_lines'], found['tracebacks'],
                     found.get('rpc_timeouts', 0),
                     found.get('busy_answers', 0)))
    print('\nload average (1, 5, 15 min): %s' % report['load'])
    if report.get('error'):
        print('\nRUN FAILED: %s' % report['error'])


def conductor_options(state_dir: Path, pop: str) -> dict:
    """``[discovery_conductor]`` as ``pop``'s conductor runs with it: the
    launcher's values over the defaults (minus the transport URL)."""
    from discovery_nova.conf import conductor as conductor_conf

    options = {opt.dest: opt.default
               for opt in conductor_conf.conductor_opts
               if opt.dest != 'federation_transport_url'}
    parser = configparser.RawConfigParser(strict=False)
    parser.read(state_dir / 'pops' / pop / 'nova.conf')
    if not parser.has_section('discovery_conductor'):
        return options
    shared = parser.defaults()
    options.update({k: v for k, v in parser.items('discovery_conductor')
                    if k not in shared and k != 'federation_transport_url'})
    return options


def directory_ttl(state_dir: Path, pop: str) -> float:
    """``[discovery_scheduler] pop_refresh_interval`` of ``pop``: how long
    a conductor may keep a PoP directory read before every PoP existed
    (a build forwarded meanwhile is refused: "near=<PoP> is invalid")."""
    from discovery_nova.conf import scheduler as scheduler_conf

    default = next(opt.default for opt in scheduler_conf.scheduler_opts
                   if opt.dest == 'pop_refresh_interval')
    parser = configparser.RawConfigParser(strict=False)
    parser.read(state_dir / 'pops' / pop / 'nova.conf')
    return float(parser.get('discovery_scheduler', 'pop_refresh_interval',
                            fallback=default))


def code_digest() -> str:
    """sha256 of discovery_nova/conductor/*.py: which conductor ran."""
    digest = hashlib.sha256()
    for path in sorted((REPO / 'discovery_nova' / 'conductor').glob('*.py')):
        digest.update(path.name.encode() + b'\0' + path.read_bytes())
    return digest.hexdigest()[:16]


def _git_head() -> str | None:
    try:
        return subprocess.run(
            ['git', '-C', str(REPO), 'rev-parse', '--short', 'HEAD'],
            capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true',
                        help='3 boots each, small PoPs and a 40-server '
                        'storm; report in the temporary directory')
    parser.add_argument('--count', type=int,
                        help='boots of each kind in phase 1 (default 10, '
                        '3 with --quick)')
    parser.add_argument('--storm', type=int,
                        help='servers of the boot storm (default 200, 40 '
                        'with --quick)')
    parser.add_argument('--compute-size', metavar='VCPUS:RAM_MB',
                        help='per compute, 2 per PoP (default 40:40960: '
                        '80 dn.tiny per PoP; 6:6144 with --quick)')
    parser.add_argument('--workers', type=int, default=8,
                        help='threads issuing the storm (default 8)')
    parser.add_argument('--fill-workers', type=int, default=1,
                        help='threads filling the first PoP (default 1)')
    parser.add_argument('--deadline', type=float, default=1200.0,
                        help='seconds after its creates by which every '
                        'server of the storm must be ACTIVE or ERROR '
                        '(default 1200; a fill round: at most %d)'
                        % FILL_DEADLINE)
    parser.add_argument('--database', default='sqlite',
                        choices=('sqlite', 'mysql', 'postgresql'),
                        help='databases of the cloud (default sqlite; '
                        'mysql needs a server on 127.0.0.1 that no other '
                        'cloud uses: the database names are the PoPs\'')
    parser.add_argument('--base-port', type=int,
                        help='first port of the cloud (default: a free '
                        'block)')
    parser.add_argument('--report', help='JSON report path (default %s, '
                        'or the temporary directory with --quick)'
                        % DOC_REPORT.relative_to(REPO))
    parser.add_argument('--keep-state', action='store_true',
                        help='keep the cloud state directory (logs, '
                        'databases) after the run; it is always kept when '
                        'the run failed')
    args = parser.parse_args(argv)
    count = args.count or (3 if args.quick else 10)
    storm = args.storm or (40 if args.quick else 200)
    size = args.compute_size or ('6:6144' if args.quick else '40:40960')
    if min(count, storm, args.workers, args.fill_workers) < 1:
        parser.error('--count, --storm, --workers and --fill-workers must '
                     'be positive')

    tmp = Path(tempfile.mkdtemp(prefix='conductor-figures-'))
    report_path = Path(args.report) if args.report else (
        tmp / 'report.json' if args.quick else DOC_REPORT)
    cloud = BenchCloud(tmp / 'cloud', 3, size, args.base_port,
                       args.database)
    report: dict = {
        'command': ' '.join(['benchmarks/conductor_figures.py']
                            + (argv if argv is not None else sys.argv[1:])),
        'date': datetime.datetime.now(datetime.UTC).strftime(
            '%Y-%m-%d %H:%M UTC'),
        'machine': {'cpus': os.cpu_count(),
                    'python': platform.python_version(),
                    'platform': platform.platform()},
        'git_head': _git_head(),
        'conductor_code_sha256': code_digest(),
        'cloud': {'pops': 3, 'compute_size': size, 'computes_per_pop': 2,
                  'database': args.database,
                  'transport': 'p2p', 'conductor': 'discovery'},
        'load': {}}
    previous = {s: signal.signal(s, _interrupt)
                for s in (signal.SIGTERM, signal.SIGHUP)}
    code = 0
    started = time.monotonic()
    try:
        report['load']['before'] = os.getloadavg()
        up_s = cloud.up(timeout=1200)
        report['cloud'].update(
            up_seconds=round(up_s, 1), base_port=cloud.base_port,
            pop_names=cloud.names, rtt_ms=cloud.rtts,
            discovery_conductor=conductor_options(cloud.state_dir,
                                                  cloud.names[0]))
        settle = directory_ttl(cloud.state_dir, cloud.names[0]) + 1.0
        _log('waiting %.0f s: every conductor\'s cached PoP directory is '
             'then read after all PoPs were registered' % settle)
        time.sleep(settle)
        report['memory'] = {'after start': cloud.memory()}
        report['load']['after start'] = os.getloadavg()
        report['latency'] = phase_latency(cloud, count, timeout=600)
        report['load']['after latency'] = os.getloadavg()
        report['cleanup_latency'] = delete_everything(cloud, args.workers,
                                                      900)
        report['storm'] = phase_storm(cloud, storm, args.workers,
                                      args.deadline, args.fill_workers)
        report['memory']['after storm'] = cloud.memory()
        report['load']['after storm'] = os.getloadavg()
        report['cleanup_storm'] = delete_everything(cloud, args.workers,
                                                    1800)
        report['memory']['after cleanup'] = cloud.memory()
        fill_stuck = any(r['stuck'] for r in report['storm']['fill']['rounds'])
        if report['storm']['stuck'] or report['latency']['problems'] or \
                fill_stuck:
            code = 2
    except KeyboardInterrupt:
        report['error'] = 'interrupted'
        code = 130
    except Exception as exc:
        traceback.print_exc()
        report['error'] = '%s: %s' % (type(exc).__name__, exc)
        code = 1
    finally:
        # Nothing may stop the cloud from coming down.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        try:
            cloud.stop_up()
            report['log_errors'] = cloud.scan_logs()
            if not cloud.down():
                report.setdefault('error', 'cloud down failed')
                code = code or 1
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    report['seconds'] = round(time.monotonic() - started, 1)
    if code in (1, 130) and not args.report:
        # A run that did not finish never replaces the recorded report.
        report_path = tmp / 'report.json'
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=1, default=str) + '\n')
    print_table(report)
    print('\nreport: %s' % report_path)
    if code or args.keep_state:
        print('state directory kept: %s' % cloud.state_dir)
    else:
        shutil.rmtree(cloud.state_dir, ignore_errors=True)
    return code


if __name__ == '__main__':
    sys.exit(main())
