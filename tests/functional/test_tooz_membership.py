"""Membership over real tooz backends, with members in separate processes.

Each scenario runs an observer in this process and two or more agents as
child processes (each running ``ToozMembership.run`` under a
``Supervisor``): joins arrive with capabilities, a stopped agent's goodbye
arrives within a couple of heartbeats, a killed agent (SIGKILL, no goodbye)
is reported gone within the membership timeout, and an agent restarted
under the same name replaces its stale record. Backends: the default
``file://`` directory, the Redis on 127.0.0.1:6379, and an etcd that the
test starts on free ports with a temporary data directory.
"""

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import pytest

from discovery_nova.overlay.errors import MembershipUnavailable
from discovery_nova.overlay.membership import LeaveReason
from discovery_nova.overlay.membership import Member
from discovery_nova.overlay.supervisor import Supervisor
from discovery_nova.overlay.tooz_membership import ToozMembership
from tests.ports import free_tcp_port

pytestmark = pytest.mark.functional

HEARTBEAT = 0.2
TIMEOUT = 2.0
#: Scheduling slack on a loaded 2-core machine, on top of the timeout.
SLACK = 2.5

CHILD = r'''
import asyncio, json, signal, sys
from discovery_nova.overlay.membership import Member
from discovery_nova.overlay.supervisor import Supervisor
from discovery_nova.overlay.supervisor import Supervisor
from discovery_nova.overlay.tooz_membership import ToozMembership

url, group, name, heartbeat, timeout = sys.argv[1:6]


def say(*what):
    print(json.dumps(what), flush=True)


async def main():
    member = Member.create(name, '127.0.0.1:%d' % (7000 + len(name)),
                           coordinate=[[1.0, 2.0], 0.5], tags=['pop:' + name])
    membership = ToozMembership(url, group, member, float(heartbeat),
                                float(timeout))
    membership.register_listener(
        on_join=lambda e: say('join', e.member.name),
        on_leave=lambda e: say('leave', e.member.name))
    await asyncio.to_thread(membership.start)
    say('joined', name)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    supervisor = Supervisor(restart_backoff=0.1, restart_backoff_max=1.0)
    supervisor.add('membership', membership.run)
    supervisor.start()
    await stop.wait()
    await supervisor.stop()
    await asyncio.to_thread(membership.stop)
    say('stopped', name)


asyncio.run(main())
'''


def _free_port() -> int:
    return free_tcp_port()


class Agent:
    """One member in its own process; its events are read as JSON lines."""

    def __init__(self, url: str, group: str, name: str):
        self.name = name
        self.lines: list[list] = []
        self.proc = subprocess.Popen(
            [sys.executable, '-c', CHILD, url, group, name, str(HEARTBEAT),
             str(TIMEOUT)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def saw(self, *what) -> bool:
        return list(what) in self.lines

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(timeout=5)


async def _until(predicate, timeout: float, what: str) -> float:
    """Wait for ``predicate``; return the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail('%s did not happen within %.1f s' % (what, timeout))
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def _scenario(url: str, group: str) -> dict:
    observer = ToozMembership(url, group, Member.create('observer', ''),
                              HEARTBEAT, TIMEOUT)
    events: list = []
    observer.register_listener(
        on_join=lambda e: events.append(('join', e.member)),
        on_leave=lambda e: events.append(('leave', e.member.name, e.reason)))
    await asyncio.to_thread(observer.start)
    watcher = asyncio.ensure_future(observer.run())
    agents = [Agent(url, group, name) for name in ('alpha', 'beta', 'gamma')]
    figures = {}
    try:
        joined = {'alpha', 'beta', 'gamma'}
        await _until(lambda: joined <= set(observer.members()), 60,
                     'three agents joining')
        alpha = observer.members()['alpha']
        assert alpha.address == '127.0.0.1:7005'
        assert alpha.coordinate.vec == (1.0, 2.0)
        assert alpha.tags == ('pop:alpha',)
        # Each agent is told of the others (and of the observer).
        await _until(lambda: all(
            a.saw('join', b.name) for a in agents for b in agents
            if a is not b) and agents[0].saw('join', 'observer'), 30,
            'agents seeing each other')

        # A clean stop says goodbye: seen within a few heartbeats.
        agents[0].terminate()
        figures['goodbye_s'] = await _until(
            lambda: 'alpha' not in observer.members(), 10 * HEARTBEAT + SLACK,
            'the leave of a stopped agent')
        await _until(lambda: agents[0].saw('stopped', 'alpha'), 10,
                     'the stopped agent exiting')
        await _until(lambda: agents[1].saw('leave', 'alpha'), 5,
                     'beta told of the stopped agent')

        # A killed agent says nothing: it expires after the timeout.
        agents[1].kill()
        figures['kill_s'] = await _until(
            lambda: 'beta' not in observer.members(), TIMEOUT + SLACK,
            'the leave of a killed agent')
        assert figures['kill_s'] >= TIMEOUT - 2 * HEARTBEAT - 0.5, (
            'left before its heartbeats could have expired')
        assert ('leave', 'beta', LeaveReason.GONE) in events
        await _until(lambda: agents[2].saw('leave', 'beta'),
                     TIMEOUT + SLACK, 'gamma told of the killed agent')

        # Killed and restarted under the same name: the new process
        # replaces the stale record instead of failing to join.
        agents[2].kill()
        again = Agent(url, group, 'gamma')
        agents.append(again)
        await _until(lambda: again.saw('joined', 'gamma'), 60,
                     'a restarted agent joining under its old name')
        await asyncio.sleep(TIMEOUT + 4 * HEARTBEAT)
        assert 'gamma' in observer.members()
        assert again.proc.poll() is None
        assert observer.dispatcher.failures_total == 0
        return figures
    finally:
        for agent in agents:
            agent.close()
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await asyncio.to_thread(observer.stop)


def test_file_backend_with_separate_processes(tmp_path):
    url = 'file://%s' % (tmp_path / 'membership')
    figures = asyncio.run(_scenario(url, 'overlay'))
    print('file:// goodbye %(goodbye_s).2f s, kill %(kill_s).2f s' % figures)


@pytest.fixture
def redis_url():
    import redis
    namespace = 'discovery-nova-test-%s' % uuid.uuid4().hex
    client = redis.Redis(host='127.0.0.1', port=6379)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip('Redis is not running on 127.0.0.1:6379 (%s); start '
                    'it with: service redis-server start' % exc)
    yield 'redis://127.0.0.1:6379?namespace=%s' % namespace
    keys = list(client.scan_iter(match=namespace + '*'))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.mark.redis
def test_redis_backend_with_separate_processes(redis_url):
    figures = asyncio.run(_scenario(redis_url, 'overlay'))
    print('redis:// goodbye %(goodbye_s).2f s, kill %(kill_s).2f s'
          % figures)


class EtcdServer:
    """A single-node etcd on free loopback ports with its own data dir."""

    def __init__(self, binary: str, data_dir):
        self.binary = binary
        self.data_dir = data_dir
        self.client_port, self.peer_port = _free_port(), _free_port()
        self.url = 'etcd3+http://127.0.0.1:%d' % self.client_port
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        peer = 'http://127.0.0.1:%d' % self.peer_port
        client = 'http://127.0.0.1:%d' % self.client_port
        self.proc = subprocess.Popen(
            [self.binary, '--name', 'test', '--data-dir', str(self.data_dir),
             '--listen-client-urls', client, '--advertise-client-urls',
             client, '--listen-peer-urls', peer,
             '--initial-advertise-peer-urls', peer,
             '--initial-cluster', 'test=' + peer],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(client + '/health',
                                            timeout=1) as answer:
                    if json.load(answer).get('health') == 'true':
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail('etcd on port %d did not become healthy'
                            % self.client_port)
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def etcd(tmp_path):
    binary = shutil.which('etcd')
    if binary is None:
        pytest.skip('etcd is not installed; install it with: '
                    'apt-get install -y etcd-server')
    server = EtcdServer(binary, tmp_path / 'etcd')
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def etcd_url(etcd):
    return etcd.url


@pytest.mark.etcd
def test_etcd_backend_with_separate_processes(etcd_url):
    figures = asyncio.run(_scenario(etcd_url, 'overlay'))
    print('etcd3+http:// goodbye %(goodbye_s).2f s, kill %(kill_s).2f s'
          % figures)


# -- unreachable or unusable backends ------------------------------------

def _start_fails(url: str) -> str:
    membership = ToozMembership(url, 'overlay', Member.create('a', ''),
                                HEARTBEAT, TIMEOUT, op_timeout=2.0)
    with pytest.raises(MembershipUnavailable) as info:
        membership.start()
    assert not membership.started
    message = str(info.value)
    assert '\n' not in message
    return message


@pytest.mark.parametrize('scheme', ['redis', 'etcd3+http'])
def test_an_unreachable_server_is_one_clear_error(scheme):
    url = '%s://127.0.0.1:%d' % (scheme, _free_port())
    started = time.monotonic()
    message = _start_fails(url)
    assert time.monotonic() - started < 10
    assert url in message
    assert 'expected a reachable tooz backend' in message


def test_a_password_in_the_url_stays_out_of_the_error():
    message = _start_fails('redis://:s3cret@127.0.0.1:%d' % _free_port())
    assert 's3cret' not in message
    assert ':***@127.0.0.1' in message


def test_an_unusable_directory_leaves_nothing_behind(tmp_path):
    blocker = tmp_path / 'not-a-directory'
    blocker.write_text('')
    message = _start_fails('file://%s/membership' % blocker)
    assert str(blocker) in message
    assert os.listdir(tmp_path) == ['not-a-directory']


@pytest.mark.parametrize('url,words', [
    ('nosuch://host:1', "no tooz driver for scheme 'nosuch'"),
    ('/var/lib/membership', 'is no tooz URL'),
])
def test_a_url_without_a_driver_is_refused(url, words):
    with pytest.raises(MembershipUnavailable, match=words):
        ToozMembership(url, 'overlay', Member.create('a', '')).start()


# -- behaviour of one process's membership against real backends ---------

def _pair(url: str):
    a = ToozMembership(url, 'overlay', Member.create('a', '10.0.0.1:7390'),
                       HEARTBEAT, TIMEOUT, refresh_every=2)
    b = ToozMembership(url, 'overlay', Member.create('b', '10.0.0.2:7390'),
                       HEARTBEAT, TIMEOUT, refresh_every=2)
    a.start()
    b.start()
    return a, b


def _poll_until(memberships, predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail('%s did not happen within %.1f s' % (what, timeout))
        for membership in memberships:
            membership.poll()
        time.sleep(HEARTBEAT / 2)


@pytest.fixture(params=['file', 'redis'])
def url(request, tmp_path):
    if request.param == 'file':
        return 'file://%s' % (tmp_path / 'membership')
    return request.getfixturevalue('redis_url')


def test_capability_updates_reach_the_listeners(url):
    a, b = _pair(url)
    updates = []
    b.register_listener(on_update=lambda e: updates.append(
        e.member.capabilities))
    try:
        _poll_until([a, b], lambda: 'a' in b.members(), 10, 'a joining')
        a.update_capabilities({'coordinate': [[3.0, 4.0], 1.0],
                               'tags': ['country:FR']})
        _poll_until([a, b], lambda: b.members()['a'].tags ==
                    ('country:FR',), 10, 'the update reaching b')
        assert b.members()['a'].coordinate.vec == (3.0, 4.0)
        assert updates[-1]['tags'] == ['country:FR']
        assert a.member.tags == ('country:FR',)
    finally:
        a.stop()
        b.stop()


def test_junk_records_are_skipped_counted_and_logged_once(url, caplog):
    from tooz import coordination
    a, b = _pair(url)
    junk = coordination.get_coordinator(url, b'junk')
    junk.start()
    try:
        junk.join_group(b'overlay', {'version': 99}).get()
        with caplog.at_level(logging.WARNING):
            _poll_until([a, b], lambda: 'b' in a.members(), 10, 'b joining')
            for _ in range(4):
                a.poll()
        assert 'junk' not in a.members()
        assert a.counters['invalid_records'] >= 1
        # Once by each of a and b, not once per round.
        assert caplog.text.count('Ignoring member junk') == 2
        assert 'record version 1 expected, got 99' in caplog.text
    finally:
        junk.stop()
        a.stop()
        b.stop()


def test_a_late_joiner_and_an_observer_without_a_member(url):
    observer = ToozMembership(url, 'overlay', None, HEARTBEAT, TIMEOUT)
    a = ToozMembership(url, 'overlay', None, HEARTBEAT, TIMEOUT)
    observer.start()
    a.start()
    joins = []
    observer.register_listener(on_join=lambda e: joins.append(e.member.name))
    try:
        assert a.member is None
        a.join(Member.create('late', '10.0.0.3:7390'))
        _poll_until([observer, a], lambda: 'late' in observer.members(), 10,
                    'the late joiner appearing')
        assert joins == ['late']
        assert set(a.members()) == {'late'}  # observers are not members
        with pytest.raises(MembershipUnavailable, match='already joined'):
            a.join(Member.create('other', ''))
        a.leave()
        _poll_until([observer, a], lambda: 'late' not in observer.members(),
                    10, 'the leave')
    finally:
        observer.stop()
        a.stop()


@pytest.mark.redis
def test_a_stalled_member_is_dropped_then_joins_again(redis_url):
    a, b = _pair(redis_url)
    seen = []
    b.register_listener(on_join=lambda e: seen.append(('join', e.member.name)),
                        on_leave=lambda e: seen.append(('leave',
                                                        e.member.name)))
    try:
        _poll_until([a, b], lambda: 'a' in b.members(), 10, 'a joining')
        # a's loop stalls past the timeout; b keeps going and drops it.
        _poll_until([b], lambda: 'a' not in b.members(), TIMEOUT + SLACK,
                    'b dropping the stalled a')
        _poll_until([a, b], lambda: 'a' in b.members(), 10, 'a coming back')
        assert a.counters['rejoins'] == 1
        assert seen == [('join', 'a'), ('leave', 'a'), ('join', 'a')]
    finally:
        a.stop()
        b.stop()


@pytest.mark.etcd
def test_a_backend_outage_is_supervised_and_survived(etcd):
    """etcd goes away: the membership loop fails, the supervisor restarts
    it with backoff until etcd is back, and the member is in the group
    again for the others."""

    async def scenario():
        a = ToozMembership(etcd.url, 'overlay', Member.create('a', ''),
                           HEARTBEAT, TIMEOUT, op_timeout=1.0)
        supervisor = Supervisor(restart_backoff=0.1, restart_backoff_max=0.4)
        supervisor.add('membership', a.run)
        supervisor.start()
        try:
            await _until(lambda: a.member is not None, 30, 'a joining')
            etcd.stop()
            await _until(lambda: supervisor.restarts['membership'] >= 2, 30,
                         'the supervisor restarting the failed loop')
            status = supervisor.status()['membership']
            assert 'MembershipUnavailable' in status.last_error
            assert etcd.url in status.last_error
            await asyncio.to_thread(etcd.start)
            b = ToozMembership(etcd.url, 'overlay', Member.create('b', ''),
                               HEARTBEAT, TIMEOUT)
            await asyncio.to_thread(b.start)
            try:
                deadline = time.monotonic() + TIMEOUT + 15
                while 'a' not in b.members():
                    assert time.monotonic() < deadline, (
                        'a never came back after the outage')
                    await asyncio.to_thread(b.poll)
                    await asyncio.sleep(HEARTBEAT)
            finally:
                await asyncio.to_thread(b.stop)
            return supervisor.restarts['membership']
        finally:
            await supervisor.stop()
            await asyncio.to_thread(a.stop)

    restarts = asyncio.run(scenario())
    print('etcd outage: %d restarts of the membership loop' % restarts)
