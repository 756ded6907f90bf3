"""Serve one OpenStack WSGI application in this process.

Nova 34 no longer ships a ``nova-api`` server script, and keystone,
placement and glance are WSGI applications too; in production they run
under uWSGI or mod_wsgi. This runner is the small threaded HTTP server the
local cloud uses instead, one process per service, so that each API keeps
its own interpreter as it would under a real WSGI container.

Usage: ``python -m discovery_nova.cloud.wsgi_runner MODULE:ATTR HOST PORT
[ARG...]`` with the service's config location in its usual environment
variable (``OS_NOVA_CONFIG_DIR``, ``OS_KEYSTONE_CONFIG_DIR``, ...); the
ARGs become the application's ``sys.argv[1:]`` (nova reads
``--config-dir`` there), as uWSGI's ``--pyargv`` would pass them.
"""

import importlib
import logging
import signal
import socketserver
import sys
from wsgiref import simple_server

LOG = logging.getLogger(__name__)


class ThreadingWSGIServer(socketserver.ThreadingMixIn,
                          simple_server.WSGIServer):
    """One thread per connection: API calls may call back into this API."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


class QuietHandler(simple_server.WSGIRequestHandler):
    """Access log lines through logging, not straight onto stderr."""

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        LOG.info("%(client)s %(line)s",
                 {'client': self.address_string(), 'line': format % args})


def load_application(target: str):
    """Import ``module:attribute`` and return the WSGI callable."""
    module_name, sep, attribute = target.partition(':')
    if not sep or not module_name or not attribute:
        raise SystemExit('expected MODULE:ATTRIBUTE, got %r' % target)
    module = importlib.import_module(module_name)
    application = getattr(module, attribute, None)
    if not callable(application):
        raise SystemExit('%s has no WSGI application %r'
                         % (module_name, attribute))
    return application


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3:
        raise SystemExit(
            'usage: python -m discovery_nova.cloud.wsgi_runner '
            'MODULE:ATTRIBUTE HOST PORT [ARG...]')
    target, host, port_text = argv[:3]
    try:
        port = int(port_text)
    except ValueError:
        raise SystemExit('PORT must be an integer, got %r'
                         % port_text) from None
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format='%(asctime)s %(process)d %(levelname)s %(name)s %(message)s')
    # Applications read sys.argv for oslo.config (nova's wsgi_app does):
    # give them the program name and the extra ARGs, as uWSGI would.
    sys.argv = [target.partition(':')[0]] + list(argv[3:])
    application = load_application(target)
    # Imported here, after the application: nova's WSGI module decides its
    # concurrency model at import and must come first.
    from discovery_nova.cloud import sqlite_locking
    sqlite_locking.install_if_requested()
    server = ThreadingWSGIServer((host, port), QuietHandler)
    server.set_app(application)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    LOG.info("serving %(target)s on http://%(host)s:%(port)d/",
             {'target': target, 'host': host, 'port': port})
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()


if __name__ == '__main__':
    main()
