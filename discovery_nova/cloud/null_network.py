"""An empty Networking (neutron) API for PoPs that offer no networking.

The local cloud boots servers with ``--nic none`` on the fake virt driver
and runs no neutron. Nova still asks the network API about an instance's
ports when it deletes it (``_shutdown_instance`` refreshes the network info
and deallocates), and fails the delete if no network endpoint answers. This
service is that endpoint: it answers every read with an empty collection
and refuses every write with 403, which is exactly what a neutron with no
networks and no quota would say to nova. It keeps no state.

It runs under the same runner as the other APIs:
``python -m discovery_nova.cloud.wsgi_runner
discovery_nova.cloud.null_network:application HOST PORT``.
"""

import json
import re

_COLLECTION = re.compile(r'^/v2\.0/([a-z][a-z0-9_-]*)(?:\.json)?/?$')
_ITEM = re.compile(r'^/v2\.0/([a-z][a-z0-9_-]*)/[^/]+/?$')


def _reply(start_response, status: str, body: dict) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [('Content-Type', 'application/json'),
                            ('Content-Length', str(len(data)))])
    return [data]


def application(environ, start_response):
    """Answer the Networking API v2.0 as a neutron with nothing in it."""
    path = environ.get('PATH_INFO', '/')
    method = environ.get('REQUEST_METHOD', 'GET')
    if path in ('', '/'):
        return _reply(start_response, '200 OK', {'versions': [{
            'id': 'v2.0', 'status': 'CURRENT',
            'links': [{'rel': 'self', 'href': '/v2.0/'}]}]})
    if method != 'GET':
        return _reply(start_response, '403 Forbidden', {'NeutronError': {
            'type': 'Forbidden', 'detail': '',
            'message': 'this PoP offers no networking; boot with --nic '
                       'none'}})
    match = _COLLECTION.match(path)
    if match:
        return _reply(start_response, '200 OK', {match.group(1): []})
    match = _ITEM.match(path)
    if match:
        return _reply(start_response, '404 Not Found', {'NeutronError': {
            'type': 'NotFound', 'detail': '',
            'message': 'no %s here: this PoP offers no networking'
                       % match.group(1)}})
    return _reply(start_response, '404 Not Found', {'NeutronError': {
        'type': 'NotFound', 'detail': '',
        'message': 'unknown path %s' % path}})

