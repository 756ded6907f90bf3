"""Shared pieces of the p2p driver's functional tests.

``make_conf`` builds a private ``ConfigOpts`` per simulated service, so
several peers (one per ConfigOpts) can live in one test process and talk
over real sockets; ``PeerProcess`` runs a peer in its own process (needed to
kill one, and for the eventlet executor).
"""

import json
import os
import subprocess
import sys
import time

from oslo_config import cfg
from oslo_messaging import conffixture

from discovery_nova.conf import messaging as messaging_conf
from tests.ports import free_tcp_port

KEY = 'test-deployment-key-0123456789'
#: The exchange of every test target: set explicitly, because the default
#: (``control_exchange``) is a process-wide default that Nova changes to
#: ``nova`` once its harness has run in the same session.
EXCHANGE = 'p2p-test'
SERVER_SCRIPT = os.path.join(os.path.dirname(__file__), 'p2p_server.py')

FAST = {
    'heartbeat_interval': 0.2,
    'registration_ttl': 2.0,
    'connect_timeout': 1.0,
    'idle_timeout': 5.0,
    'undelivered_hold': 2.0,
}


def free_port() -> int:
    return free_tcp_port()


def url_for(*ports: int) -> str:
    return 'p2p://%s/' % ','.join('127.0.0.1:%d' % p for p in ports)


def make_conf(key: str | None = KEY, **overrides) -> cfg.ConfigOpts:
    """A ConfigOpts with oslo.messaging's and the driver's options."""
    conf = cfg.ConfigOpts()
    conf([], project='p2p-test')
    conffixture.ConfFixture(conf)
    messaging_conf.register_opts(conf)
    settings = dict(FAST, listen_host='127.0.0.1', **overrides)
    if key is not None:
        settings['deployment_key'] = key
    for name, value in settings.items():
        conf.set_override(name, value, group='oslo_messaging_p2p')
    conf.set_override('control_exchange', EXCHANGE)
    return conf


class PeerProcess:
    """A peer serving RPC (and optionally notifications) in a subprocess.

    It prints one JSON line when ready; see ``p2p_server.py``.
    """

    def __init__(self, url: str, topic: str, server: str,
                 executor: str = 'threading', exchange: str | None = None,
                 key: str = KEY, env: dict | None = None) -> None:
        args = [sys.executable, SERVER_SCRIPT, '--url', url,
                '--topic', topic, '--server', server,
                '--executor', executor, '--key', key,
                '--fast', json.dumps(FAST)]
        if exchange:
            args += ['--exchange', exchange]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=dict(os.environ, **(env or {})))
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read()
            raise RuntimeError('peer process failed to start: %s' % err)
        self.info = json.loads(line)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns a true value; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError('condition not met within %.1f s'
                                 % timeout)
        time.sleep(interval)


class PeerRefused(Exception):
    """Raised by the test server; clients allow this module's exceptions."""
