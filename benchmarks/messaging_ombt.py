"""ombt-style benchmark: the p2p driver against RabbitMQ, same runs.

Run: ``python benchmarks/messaging_ombt.py`` (RabbitMQ on 127.0.0.1:5672,
guest/guest). For each driver it starts one RPC server process (threading
executor) and one client process, then measures, with the same payload
(a 64-byte string argument, a small dict reply):

* RPC call latency p50/p99 with 1 client (sequential calls) and with 10
  clients (10 threads of one client process, each its own RPCClient);
* 10,000 calls (10 clients x 1,000), counting replies and the calls the
  server executed: none may be lost;
* cast throughput: one client casts as fast as it can; the clock stops
  when the server has executed the last one;
* memory: the server peer's and the client peer's RSS every 10,000
  messages over a 100,000-message run (p2p only: a broker's memory is not
  comparable);
* the raw loopback round trip (one TCP ping-pong between two processes of
  this machine), the floor under any transport.

``--runs N`` (default 3) repeats loopback, rabbit, p2p N times, interleaved,
so that both drivers meet the same load; the report gives each run and the
medians. Results are printed and written to
``doc/source/benchmarks/messaging.md`` (``--no-write``: printed only).
"""

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT = os.path.join(REPO, 'doc', 'source', 'benchmarks', 'messaging.md')
RABBIT_URL = 'rabbit://guest:guest@127.0.0.1:5672/'
KEY = 'benchmark-deployment-key-0123456789'
PAYLOAD = 'x' * 64
TOPIC = 'ombt'


def _conf(driver: str):
    from oslo_config import cfg
    from oslo_messaging import conffixture

    from discovery_nova.conf import messaging as messaging_conf

    conf = cfg.ConfigOpts()
    conf([], project='ombt')
    conffixture.ConfFixture(conf)
    if driver == 'p2p':
        messaging_conf.register_opts(conf)
        conf.set_override('deployment_key', KEY, group='oslo_messaging_p2p')
        conf.set_override('listen_host', '127.0.0.1',
                          group='oslo_messaging_p2p')
    return conf


def _rss_kb() -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


class Endpoint:
    """What the server executes; counts what it saw."""

    def __init__(self) -> None:
        self.calls = 0
        self.casts = 0
        self.lock = threading.Lock()

    def echo(self, ctxt, payload):
        with self.lock:
            self.calls += 1
        return {'n': len(payload)}

    def note(self, ctxt, payload):
        with self.lock:
            self.casts += 1

    def counters(self, ctxt):
        return {'calls': self.calls, 'casts': self.casts, 'rss_kb': _rss_kb()}

    def reset(self, ctxt):
        with self.lock:
            self.calls = self.casts = 0


def run_server(driver: str, url: str) -> None:
    import oslo_messaging

    conf = _conf(driver)
    transport = oslo_messaging.get_rpc_transport(conf, url=url)
    server = oslo_messaging.get_rpc_server(
        transport, oslo_messaging.Target(topic=TOPIC, server='srv'),
        [Endpoint()], executor='threading')
    server.start()
    print('ready', flush=True)
    sys.stdin.read()
    server.stop()
    server.wait()
    transport.cleanup()


def _percentile(values: list, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_client(driver: str, url: str, memory: bool) -> None:
    import oslo_messaging

    conf = _conf(driver)
    transport = oslo_messaging.get_rpc_transport(conf, url=url)
    target = oslo_messaging.Target(topic=TOPIC, server='srv')
    client = oslo_messaging.get_rpc_client(transport, target, timeout=30)
    out: dict = {}
    deadline = time.monotonic() + 30
    while True:
        try:
            client.call({}, 'reset')
            break
        except oslo_messaging.MessagingTimeout:
            if time.monotonic() > deadline:
                raise
    for _ in range(200):  # warm-up
        client.call({}, 'echo', payload=PAYLOAD)

    lat = []
    for _ in range(2000):
        start = time.perf_counter()
        client.call({}, 'echo', payload=PAYLOAD)
        lat.append(time.perf_counter() - start)
    out['call1_p50_ms'] = 1000 * statistics.median(lat)
    out['call1_p99_ms'] = 1000 * _percentile(lat, 0.99)

    client.call({}, 'reset')
    lat10: list = []
    errors: list = []
    lock = threading.Lock()

    def worker() -> None:
        own = oslo_messaging.get_rpc_client(transport, target, timeout=30)
        mine = []
        for _ in range(1000):
            start = time.perf_counter()
            try:
                reply = own.call({}, 'echo', payload=PAYLOAD)
                if reply != {'n': len(PAYLOAD)}:
                    errors.append('bad reply %r' % (reply,))
            except Exception as exc:
                errors.append(repr(exc))
                continue
            mine.append(time.perf_counter() - start)
        with lock:
            lat10.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    executed = client.call({}, 'counters')['calls']
    out['call10_p50_ms'] = 1000 * statistics.median(lat10)
    out['call10_p99_ms'] = 1000 * _percentile(lat10, 0.99)
    out['call10_per_s'] = len(lat10) / elapsed
    out['calls_sent'] = 10000
    out['calls_answered'] = len(lat10)
    out['calls_executed'] = executed
    out['call_errors'] = errors[:5]

    client.call({}, 'reset')
    casts = 20000
    start = time.perf_counter()
    for _ in range(casts):
        client.cast({}, 'note', payload=PAYLOAD)
    sent = time.perf_counter() - start
    while client.call({}, 'counters')['casts'] < casts:
        if time.perf_counter() - start > 120:
            break
        time.sleep(0.005)
    done = time.perf_counter() - start
    out['cast_sent_per_s'] = casts / sent
    out['cast_per_s'] = casts / done
    out['casts_executed'] = client.call({}, 'counters')['casts']

    if memory:
        client.call({}, 'reset')
        samples = []
        total = 100000
        for i in range(total):
            if i % 2 == 0:
                client.cast({}, 'note', payload=PAYLOAD)
            else:
                client.call({}, 'echo', payload=PAYLOAD)
            if (i + 1) % 10000 == 0:
                server = client.call({}, 'counters')
                samples.append({'messages': i + 1,
                                'server_rss_kb': server['rss_kb'],
                                'client_rss_kb': _rss_kb()})
        out['memory'] = samples
        counters = client.call({}, 'counters')
        out['memory_run_executed'] = counters['calls'] + counters['casts']
    print(json.dumps(out), flush=True)
    transport.cleanup()


def loopback_rtt_ms() -> float:
    """Median of 5,000 TCP ping-pongs of 64 bytes between two processes."""
    with socket.socket() as listener:
        listener.bind(('127.0.0.1', 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        echo = subprocess.Popen([
            sys.executable, '-c',
            'import socket\n'
            's = socket.create_connection(("127.0.0.1", %d))\n'
            's.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\n'
            'while True:\n'
            '    d = s.recv(64)\n'
            '    if not d: break\n'
            '    s.sendall(d)\n' % port])
        conn, _ = listener.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rtts = []
            for _ in range(5000):
                start = time.perf_counter()
                conn.sendall(b'p' * 64)
                got = 0
                while got < 64:
                    got += len(conn.recv(64 - got))
                rtts.append(time.perf_counter() - start)
        echo.wait(10)
    return 1000 * statistics.median(rtts)


def bench(driver: str, url: str, memory: bool) -> dict:
    me = os.path.abspath(__file__)
    server = subprocess.Popen(
        [sys.executable, me, '--role', 'server', '--driver', driver,
         '--url', url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, cwd=REPO)
    try:
        if server.stdout.readline().strip() != 'ready':
            raise RuntimeError('%s server did not start' % driver)
        client = subprocess.run(
            [sys.executable, me, '--role', 'client', '--driver', driver,
             '--url', url] + (['--memory'] if memory else []),
            capture_output=True, text=True, cwd=REPO, timeout=1800)
        if client.returncode != 0:
            raise RuntimeError('%s client failed: %s'
                               % (driver, client.stderr[-2000:]))
        return json.loads(client.stdout.strip().splitlines()[-1])
    finally:
        server.stdin.close()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _ratio_cells(runs: list[dict], key: str, fmt: str) -> list[str]:
    """Each run's rabbit / p2p figure and ratio, as a table cell."""
    cells = []
    for run in runs:
        rabbit, p2p = run['rabbit'][key], run['p2p'][key]
        cells.append('%s / %s (%.2fx)' % (fmt % rabbit, fmt % p2p,
                                          p2p / rabbit))
    return cells


#: Figure -> (target ratio p2p / rabbit, whether p2p must be below it).
TARGETS = {'call1_p50_ms': (0.5, True), 'call10_p50_ms': (0.5, True),
           'cast_per_s': (2.0, False)}


def _met(ratio: float, key: str) -> bool:
    bound, below = TARGETS[key]
    return ratio <= bound if below else ratio >= bound


def write_report(runs: list[dict]) -> str:
    """The report of interleaved runs: medians, every run, memory."""
    def median(driver, key):
        return statistics.median(run[driver][key] for run in runs)

    def row(name, key, fmt='%.3f'):
        rabbit, p2p = median('rabbit', key), median('p2p', key)
        return '| %s | %s | %s | %s |' % (
            name, fmt % rabbit, fmt % p2p,
            '%.2fx' % (p2p / rabbit) if rabbit else '-')

    def verdict(key, what):
        ratios = [run['p2p'][key] / run['rabbit'][key] for run in runs]
        met = sum(_met(r, key) for r in ratios)
        bound, below = TARGETS[key]
        return '* %s, p2p / rabbit run by run: %s; target %s %.1fx: met ' \
            'in %d of %d runs.' % (what, ', '.join(
                '%.2fx' % r for r in ratios), '<=' if below else '>=',
                bound, met, len(runs))

    floors = [run['loopback_ms'] for run in runs]
    memory = next(run['p2p']['memory'] for run in runs
                  if 'memory' in run['p2p'])
    executed = next(run['p2p']['memory_run_executed'] for run in runs
                    if 'memory' in run['p2p'])
    lines = [
        '# Messaging benchmark: p2p driver vs RabbitMQ',
        '',
        'Generated by `python benchmarks/messaging_ombt.py --runs %d` on %s '
        '(%s, %d cores; a shared machine, other jobs may have been '
        'running). %d runs, each measuring the raw loopback round trip, '
        'then rabbit, then p2p, so that both drivers meet the same load. '
        'Per driver and run: one RPC server process (threading executor) '
        'and one client process; 10 clients are 10 threads of the client '
        'process, each with its own RPCClient. Payload: a 64-byte string '
        'argument, a small dict reply. RabbitMQ: the local broker, '
        '`rabbit://` driver with default options.' % (
            len(runs), time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
            platform.node(), os.cpu_count(), len(runs)),
        '',
        'Raw loopback TCP round trip (64 bytes, two processes, median of '
        '5,000; the floor under any transport): **%.3f ms** (median of the '
        'runs; %s).' % (statistics.median(floors),
                        ', '.join('%.3f' % f for f in floors)),
        '',
        '## Medians of the runs',
        '',
        '| figure | rabbit | p2p | p2p / rabbit |',
        '|---|---|---|---|',
        row('RPC call p50, 1 client (ms)', 'call1_p50_ms'),
        row('RPC call p99, 1 client (ms)', 'call1_p99_ms'),
        row('RPC call p50, 10 clients (ms)', 'call10_p50_ms'),
        row('RPC call p99, 10 clients (ms)', 'call10_p99_ms'),
        row('RPC calls/s, 10 clients', 'call10_per_s', '%.0f'),
        row('casts/s (executed by the server)', 'cast_per_s', '%.0f'),
        row('casts/s (handed to the driver)', 'cast_sent_per_s', '%.0f'),
        '',
        'Targets of issue 3, run by run:',
        '',
        verdict('call1_p50_ms', 'RPC call p50, 1 client'),
        verdict('call10_p50_ms', 'RPC call p50, 10 clients'),
        verdict('cast_per_s', 'casts executed per second'),
        '',
        '## Every run',
        '',
        '| run | loopback | p50 1 client rabbit / p2p | p50 10 clients '
        '| casts/s rabbit / p2p | calls answered / executed, rabbit; p2p |',
        '|---|---:|---|---|---|---|',
    ]
    one = _ratio_cells(runs, 'call1_p50_ms', '%.2f ms')
    ten = _ratio_cells(runs, 'call10_p50_ms', '%.2f ms')
    casts = _ratio_cells(runs, 'cast_per_s', '%.0f')
    for k, run in enumerate(runs):
        lines.append('| %d | %.3f ms | %s | %s | %s | %d / %d; %d / %d '
                     '|' % (k + 1, run['loopback_ms'], one[k], ten[k],
                            casts[k], run['rabbit']['calls_answered'],
                            run['rabbit']['calls_executed'],
                            run['p2p']['calls_answered'],
                            run['p2p']['calls_executed']))
    lines += [
        '',
        'Each run sends 10,000 calls (10 clients x 1,000) and 20,000 casts '
        'per driver; casts executed of 20,000: %s.' % '; '.join(
            'run %d rabbit %d, p2p %d' % (k + 1,
                                          run['rabbit']['casts_executed'],
                                          run['p2p']['casts_executed'])
            for k, run in enumerate(runs)),
        '',
        '## Peer memory over 100,000 messages (p2p, first run)',
        '',
        'Alternating casts and calls; resident memory of the server peer '
        'and of the client peer after every 10,000 messages '
        '(executed: %d).' % executed,
        '',
        '| messages | server RSS (MiB) | client RSS (MiB) |',
        '|---|---|---|',
    ]
    for sample in memory:
        lines.append('| %d | %.1f | %.1f |' % (
            sample['messages'], sample['server_rss_kb'] / 1024,
            sample['client_rss_kb'] / 1024))
    lines += ['', 'Server growth from 10,000 to 100,000 messages: %.1f MiB; '
              'client: %.1f MiB.' % (
                  (memory[-1]['server_rss_kb'] -
                   memory[0]['server_rss_kb']) / 1024,
                  (memory[-1]['client_rss_kb'] -
                   memory[0]['client_rss_kb']) / 1024), '',
              '## Reading the figures', '',
              '* Both drivers pay oslo.messaging\'s own per-message cost '
              '(RPCClient, serializer, dispatcher, executor threads); the '
              'loopback floor shows how much of a call is transport at all.',
              '* A rabbit call crosses two hops (client to broker to '
              'server, and back through a reply queue) and the broker '
              'shares the same cores; a p2p call is one authenticated '
              'TCP hop each way, plus hand-offs between the caller\'s '
              'thread, the peer\'s network thread and oslo.messaging\'s '
              'server threads. Where a thread hand-off is slow (on a '
              'machine whose loopback round trip was 0.10-0.15 ms, p2p\'s '
              '1-client p50 was 1.3-1.6 ms, 0.42-0.72x rabbit\'s, in five '
              'runs of this file\'s version of commit cab5030) the 1-client '
              'ratio suffers first. A message whose link is idle is written '
              'by the network thread at once, without a task of its own.',
              '* Casts: rabbit\'s driver sends each cast through a '
              'connection from its pool and waits for the socket write; '
              'p2p hands the cast to the peer\'s asyncio thread and '
              'returns. "Executed" counts only what the server ran.',
              '* Not measured here: many peers, bounded connections and '
              'relaying (see tests/functional/messaging/test_routing.py and '
              '[the directory benchmark](messaging-directory.md)), TLS '
              'mode.', '']
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--role', choices=['all', 'server', 'client'],
                        default='all')
    parser.add_argument('--driver', choices=['p2p', 'rabbit'])
    parser.add_argument('--url')
    parser.add_argument('--memory', action='store_true')
    parser.add_argument('--runs', type=int, default=3,
                        help='interleaved runs of both drivers (default 3)')
    parser.add_argument('--no-write', action='store_true',
                        help='print the report only')
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    if args.role == 'server':
        return run_server(args.driver, args.url)
    if args.role == 'client':
        return run_client(args.driver, args.url, args.memory)
    runs = []
    for number in range(1, args.runs + 1):
        run = {'loopback_ms': loopback_rtt_ms()}
        print('run %d: loopback round trip p50: %.3f ms'
              % (number, run['loopback_ms']), flush=True)
        for driver, url in (('rabbit', RABBIT_URL),
                            ('p2p', 'p2p://127.0.0.1:%d/' % _free_port())):
            run[driver] = bench(driver, url,
                                memory=driver == 'p2p' and number == 1)
            print('run %d %s %s' % (number, driver, json.dumps(run[driver])),
                  flush=True)
        runs.append(run)
    report = write_report(runs)
    if not args.no_write:
        os.makedirs(os.path.dirname(RESULT), exist_ok=True)
        with open(RESULT, 'w') as f:
            f.write(report)
    print(report)


if __name__ == '__main__':
    main()
