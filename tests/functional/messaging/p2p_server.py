"""A p2p peer serving RPC in its own process, for the functional tests.

Run: ``python p2p_server.py --url p2p://... --topic T --server S
[--executor eventlet]``. With the eventlet executor the process is
monkey-patched first, as Nova's eventlet services are. It prints one JSON
line (pid, peer address) once it serves, then serves until killed.
"""

import argparse
import json
import os
import sys

parser = argparse.ArgumentParser()
parser.add_argument('--url', required=True)
parser.add_argument('--topic', required=True)
parser.add_argument('--server', required=True)
parser.add_argument('--exchange')
parser.add_argument('--executor', default='threading')
parser.add_argument('--key', required=True)
parser.add_argument('--fast', default='{}')
args = parser.parse_args()

if args.executor == 'eventlet':
    import eventlet
    eventlet.monkey_patch()

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))))

import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import oslo_messaging  # noqa: E402

from tests.functional.messaging import p2p_env  # noqa: E402


class Endpoint:
    def __init__(self) -> None:
        self.notes: list = []

    def echo(self, ctxt, value):
        return {'server': args.server, 'pid': os.getpid(), 'value': value,
                'ctxt_user': ctxt.get('user')}

    def fail(self, ctxt, kind):
        if kind == 'value':
            raise ValueError('value was wrong on %s' % args.server)
        raise p2p_env.PeerRefused('refused by %s' % args.server)

    def sleep(self, ctxt, seconds):
        time.sleep(seconds)
        return seconds

    def note(self, ctxt, value):
        self.notes.append(value)

    def notes_seen(self, ctxt):
        return list(self.notes)

    def green(self, ctxt):
        from oslo_utils import eventletutils
        return eventletutils.is_monkey_patched('thread')


conf = p2p_env.make_conf(key=args.key, **json.loads(args.fast))
transport = oslo_messaging.get_rpc_transport(conf, url=args.url)
target = oslo_messaging.Target(topic=args.topic, server=args.server,
                               exchange=args.exchange)
server = oslo_messaging.get_rpc_server(transport, target, [Endpoint()],
                                       executor=args.executor)
server.start()
print(json.dumps({'pid': os.getpid(),
                  'address': transport._driver.node.address}), flush=True)

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
while not stop.is_set():
    time.sleep(0.2)
server.stop()
server.wait()
transport.cleanup()
