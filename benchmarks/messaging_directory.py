"""What the p2p driver's topic directory costs as a deployment grows.

Run: ``python benchmarks/messaging_directory.py`` (nothing else needed).
For each size it starts that many peers of the driver's mesh
(``discovery_nova.messaging.mesh.PeerMesh``, the production class, over
real authenticated TCP connections on 127.0.0.1) in one asyncio loop, each
registering two RPC subscriptions as a nova-compute does, and measures:

* join: seconds from the last peer's start until every peer's directory
  lists every other peer;
* steady state: directory bytes and records each peer sends per second
  while nothing changes (frames counted as the framing layer encodes them;
  no RPC traffic runs, so every byte is directory or keepalive);
* crash: one peer dies without a goodbye; seconds until no peer lists it
  any more, and the false death declarations seen in the whole run;
* a late join: seconds until a new peer is listed everywhere.

The same script runs against another checkout (``PYTHONPATH=<checkout>``)
to compare designs in one sitting; counters an older mesh lacks print as
``-``. (It crashes a peer with ``PeerMesh.abort``; the figures of the mesh
before it were taken with this script closing the peer's sockets by hand,
which is all that method does.) Results are printed and, unless
``--no-write``, written to ``doc/source/benchmarks/messaging-directory.md``
with ``--label``'s figures merged into what the page already holds.
"""

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT = os.path.join(REPO, 'doc', 'source', 'benchmarks',
                      'messaging-directory.md')
DATA = os.path.join(REPO, 'doc', 'source', 'benchmarks',
                    'messaging-directory.json')
KEY = b'benchmark-deployment-key-0123456789'
SEEDS = 3


class ByteCounter:
    """Counts the bytes of every frame the framing layer sends."""

    def __init__(self, wire) -> None:
        self.total = 0
        self._wire = wire
        self._original = wire.Connection.send
        counter = self

        async def send(conn, obj):
            counter.total += len(wire._encode(obj))
            return await counter._original(conn, obj)

        wire.Connection.send = send

    def close(self) -> None:
        self._wire.Connection.send = self._original


def _settings(mesh_mod, name: str, args) -> object:
    return mesh_mod.MeshSettings(
        name=name, key=KEY, max_bytes=16 * 1024 * 1024,
        connect_timeout=2.0, idle_timeout=30.0,
        max_connections=args.max_connections, min_neighbours=3,
        max_hops=8, heartbeat_interval=args.heartbeat,
        registration_ttl=args.ttl)


def _counter(meshes, name: str):
    values = [getattr(m.stats, name, None) for m in meshes]
    return None if None in values else sum(values)


async def _start(mesh_mod, name: str, seeds, args):
    mesh = mesh_mod.PeerMesh(
        _settings(mesh_mod, name, args), seeds=seeds, bind_seed=True,
        listen=('127.0.0.1', 0), advertise_host=None,
        on_body=lambda src, body: None, on_directory_change=lambda: None)
    await mesh.start()
    mesh.set_subscriptions([('rpc', 'nova', 'compute', ''),
                            ('rpc', 'nova', 'compute', name)])
    return mesh


async def _wait(condition, timeout: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    return None


def _free_ports(count: int) -> list[int]:
    import socket
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


async def run_size(size: int, args) -> dict:
    from discovery_nova.messaging import mesh as mesh_mod
    from discovery_nova.overlay import wire
    seeds = [('127.0.0.1', p) for p in _free_ports(SEEDS)]
    meshes = []
    for i in range(size):
        # The first peers take the seed addresses, the others any port.
        meshes.append(await _start(mesh_mod, 'peer%04d' % i, seeds, args))
    join = await _wait(lambda: all(
        len(m.directory.live_nodes()) == size - 1 for m in meshes),
        args.timeout)
    # Let links and digests settle before counting.
    await asyncio.sleep(2 * args.heartbeat)
    counter = ByteCounter(wire)
    records0 = _counter(meshes, 'records_out')
    keep0 = _counter(meshes, 'keepalives_out')
    syncs0 = _counter(meshes, 'full_syncs')
    start = time.monotonic()
    await asyncio.sleep(args.window)
    elapsed = time.monotonic() - start
    steady_bytes = counter.total
    counter.close()
    records1 = _counter(meshes, 'records_out')
    keep1 = _counter(meshes, 'keepalives_out')
    syncs1 = _counter(meshes, 'full_syncs')
    links = statistics.mean(m.link_count() for m in meshes)

    def per_peer_s(a, b):
        if a is None or b is None:
            return None
        return (b - a) / size / elapsed

    victim = meshes.pop(size // 2)
    victim_name = victim.name
    victim.abort()
    withdrawn = await _wait(lambda: all(
        victim_name not in m.directory.live_nodes() for m in meshes),
        args.timeout)
    late = await _start(mesh_mod, 'late%04d' % size, seeds, args)
    joined = await _wait(lambda: all(
        late.name in m.directory.live_nodes() for m in meshes),
        args.timeout)
    meshes.append(late)
    result = {
        'size': size,
        'join_s': join,
        'steady_bytes_per_peer_s': steady_bytes / size / elapsed,
        'steady_records_per_peer_s': per_peer_s(records0, records1),
        'keepalives_per_peer_s': per_peer_s(keep0, keep1),
        'full_syncs_in_window': (None if syncs0 is None else
                                 syncs1 - syncs0),
        'links_per_peer': links,
        'crash_withdrawn_s': withdrawn,
        'late_join_s': joined,
        'declared_dead': _counter(meshes, 'declared_dead'),
        'timeout': args.timeout,
        'refuted': _counter(meshes, 'refuted'),
    }
    await asyncio.gather(*(m.stop() for m in meshes),
                         return_exceptions=True)
    return result


def _fmt(value, fmt='%.2f') -> str:
    return '-' if value is None else fmt % value


def _seconds(result: dict, key: str) -> str:
    if result[key] is None:
        return 'not within %.0f s' % result.get('timeout', 0)
    return '%.2f s' % result[key]


def source_revision() -> str:
    """The commit of the checkout the mesh was imported from."""
    import discovery_nova
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(
        discovery_nova.__file__)))
    try:
        rev = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                             cwd=checkout, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(
            ['git', 'status', '--porcelain', '--', 'discovery_nova/messaging'],
            cwd=checkout, capture_output=True, text=True).stdout.strip()
        return rev + (' with uncommitted changes' if dirty else '')
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'


def render(runs: dict, args) -> str:
    lines = [
        '# p2p driver: what the topic directory costs as peers are added',
        '',
        'Produced by `python benchmarks/messaging_directory.py` on a 2-core '
        'machine, Python %s. Every peer is a `PeerMesh` (the driver\'s own '
        'class) over authenticated TCP on 127.0.0.1, all of them in one '
        'process and one asyncio loop, so the largest sizes share one core: '
        'seconds there include waiting for that core. Heartbeat %.1f s, '
        'registration TTL %.1f s, at most %d connections per peer, a '
        '%.0f s steady window. Each design below was run from its own '
        'checkout with this script.' % (
            platform.python_version(), args.heartbeat, args.ttl,
            args.max_connections, args.window),
        '',
        '* *steady bytes*: directory and keepalive bytes one peer sends per '
        'second while nothing changes (mean over peers);',
        '* *records*: directory records one peer sends per second then;',
        '* *join*: from the last peer\'s start until every directory lists '
        'every peer;',
        '* *crash withdrawn*: from a peer\'s crash (no goodbye) until no '
        'directory lists it; *late join*: a new peer listed everywhere;',
        '* *false deaths*: live peers declared dead and refuting it.',
        '',
    ]
    summary = []
    for label, entry in runs.items():
        results = entry['results']
        if len(results) >= 2:
            first, last = results[0], results[-1]
            summary.append(
                '* %s: from %d to %d peers, the steady bytes a peer sends '
                'per second went from %.0f to %.0f (x%.1f for x%.1f the '
                'peers).' % (
                    label, first['size'], last['size'],
                    first['steady_bytes_per_peer_s'],
                    last['steady_bytes_per_peer_s'],
                    last['steady_bytes_per_peer_s'] /
                    max(first['steady_bytes_per_peer_s'], 1e-9),
                    last['size'] / first['size']))
    if summary:
        lines += ['## In short', ''] + summary + ['']
    lines += [
        '## What the tables do not show', '',
        '* The largest size run is 200 peers. At 400 peers in one process '
        'the one core is overloaded while they join (handshakes wait over '
        'the 2 s connect timeout, and peers starved that long get declared '
        'dead and refute it): every join floods one record to every peer '
        'and each ring link that moves exchanges whole directories, '
        'O(peers^2) in all, which one process pays here for every peer; '
        'spread over one process per peer it is O(peers) each.',
        '* "not within" a crash, for the mesh before: by reading its code, '
        'every new link carried the whole directory, which re-added the '
        'crashed peer\'s record at peers that had already expired it.',
        '',
    ]
    for label, entry in runs.items():
        lines += [
            '## %s' % label, '',
            '%s (%s, %s UTC).' % (entry['what'], entry['revision'],
                                  entry['when']),
            '',
            '| peers | steady bytes / peer / s | records / peer / s | '
            'keepalives / peer / s | links / peer | join | crash withdrawn '
            '| late join | false deaths |',
            '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
        ]
        for r in entry['results']:
            lines.append('| %d | %s | %s | %s | %.1f | %s | %s | %s | '
                         '%s |' % (
                             r['size'],
                             _fmt(r['steady_bytes_per_peer_s'], '%.0f'),
                             _fmt(r['steady_records_per_peer_s'], '%.1f'),
                             _fmt(r['keepalives_per_peer_s'], '%.1f'),
                             r['links_per_peer'], _seconds(r, 'join_s'),
                             _seconds(r, 'crash_withdrawn_s'),
                             _seconds(r, 'late_join_s'),
                             _fmt(r['refuted'], '%d')))
        lines.append('')
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+',
                        default=[10, 25, 50, 100])
    parser.add_argument('--heartbeat', type=float, default=1.0)
    parser.add_argument('--ttl', type=float, default=5.0)
    parser.add_argument('--max-connections', type=int, default=32)
    parser.add_argument('--window', type=float, default=10.0,
                        help='seconds of steady state counted')
    parser.add_argument('--timeout', type=float, default=120.0)
    parser.add_argument('--label', default='Changes flooded, ring watchers',
                        help='heading of these figures on the page')
    parser.add_argument('--what', default='This checkout\'s mesh',
                        help='one line on what ran')
    parser.add_argument('--no-write', action='store_true')
    parser.add_argument('--render-only', action='store_true',
                        help='rewrite the page from the recorded figures')
    args = parser.parse_args(argv)
    if args.render_only:
        with open(DATA) as f:
            runs = json.load(f)
        with open(RESULT, 'w') as f:
            f.write(render(runs, args))
        return 0
    results = []
    for size in args.sizes:
        result = asyncio.run(run_size(size, args))
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.no_write:
        return 0
    runs = {}
    if os.path.exists(DATA):
        with open(DATA) as f:
            runs = json.load(f)
    runs[args.label] = {
        'what': args.what, 'revision': source_revision(),
        'when': datetime.datetime.now(datetime.timezone.utc).strftime(
            '%Y-%m-%d %H:%M'),
        'results': results}
    with open(DATA, 'w') as f:
        json.dump(runs, f, indent=1, sort_keys=True)
        f.write('\n')
    with open(RESULT, 'w') as f:
        f.write(render(runs, args))
    print('wrote %s' % RESULT)
    return 0


if __name__ == '__main__':
    sys.exit(main())
