"""Listeners and incoming messages of the p2p driver.

A listener is a ``PollStyleListener`` whose queue the node fills from its
asyncio thread; oslo.messaging's ``PollStyleListenerAdapter`` polls it from
the server's thread (a greenthread under the eventlet executor), and the
``CrossQueue`` between them wakes either kind. Payloads are decoded here,
in the server's thread, not in the network thread.
"""

import typing

from oslo_log import log as logging
from oslo_messaging import exceptions
from oslo_messaging._drivers import base
from oslo_messaging._drivers import common as rpc_common
from oslo_serialization import jsonutils

from discovery_nova.messaging import handoff
from discovery_nova.messaging import node as node_mod

LOG = logging.getLogger(__name__)

_STOP = object()


def _decode(body: dict) -> tuple[dict, dict]:
    data = jsonutils.loads(body['p'])
    if (not isinstance(data, dict) or not isinstance(data.get('c'), dict)
            or not isinstance(data.get('m'), dict)):
        raise ValueError('a p2p payload is {"c": context, "m": message}')
    return data['c'], data['m']


class P2PRpcIncomingMessage(base.RpcIncomingMessage):
    """An RPC request; replies and heartbeats go back to the caller's peer.

    Replies are at most once: one frame on the way back, no retry, as the
    base class asks.
    """

    def __init__(self, node: node_mod.Node, src: str, body: dict,
                 ctxt: dict, message: dict) -> None:
        super().__init__(ctxt, message, body.get('id'))
        self._node = node
        self._src = src
        self._body = body
        self._reply_id = body.get('id')
        self.client_timeout = body.get('cm')

    def acknowledge(self) -> None:
        """Nothing to do: the message was taken off the wire already."""

    def requeue(self) -> None:
        self._node.post_rpc(self._body, None)

    def _send(self, body: dict) -> None:
        self._node.post_reply(self._src, body)

    def reply(self, reply=None, failure=None) -> None:
        if not self._reply_id:
            return
        if failure is None:
            try:
                payload = jsonutils.dumps(reply)
            except (TypeError, ValueError) as exc:
                # The caller gets an error instead of waiting for nothing.
                error = exceptions.MessageDeliveryFailure(
                    'the reply to %s cannot be serialised: %s'
                    % (self._reply_id, exc))
                failure = (type(error), error, None)
        if failure is not None:
            body = {'k': 'r', 'id': self._reply_id, 'p': None,
                    'fail': rpc_common.serialize_remote_exception(failure),
                    'end': True}
        else:
            body = {'k': 'r', 'id': self._reply_id, 'p': payload,
                    'fail': None, 'end': True}
        self._send(body)

    def heartbeat(self) -> None:
        if self._reply_id:
            self._send({'k': 'r', 'id': self._reply_id, 'p': None,
                        'fail': None, 'end': False})


class P2PNotificationIncomingMessage(base.IncomingMessage):
    """A notification; ``requeue`` hands it to its pool again."""

    def __init__(self, node: node_mod.Node, body: dict, ctxt: dict,
                 message: dict) -> None:
        super().__init__(ctxt, message)
        self._node = node
        self._body = body

    def acknowledge(self) -> None:
        """Nothing to do: delivery to this listener was final."""

    def requeue(self) -> None:
        self._node.call_in_loop(self._node.requeue_notification, self._body)


class P2PListener(base.PollStyleListener):
    """Receives what the node routes to its subscription keys."""

    def __init__(self, node: node_mod.Node,
                 keys: typing.Iterable[node_mod.Key],
                 notifications: bool) -> None:
        super().__init__()
        self._node = node
        self._notifications = notifications
        self._queue = handoff.CrossQueue()
        self._stopped = False
        self._subscribed = True
        node.subscribe(keys, self)

    def deliver(self, src: str, body: dict) -> None:
        self._queue.put((src, body))

    @base.batch_poll_helper
    def poll(self, timeout=None):
        while True:
            if self._stopped:
                timeout = 0
            try:
                item = self._queue.get(timeout)
            except handoff.Empty:
                return None
            if item is _STOP:
                return None
            src, body = item
            try:
                ctxt, message = _decode(body)
            except ValueError as exc:
                LOG.warning('p2p listener drops a message from %(src)s: '
                            '%(err)s', {'src': src, 'err': exc})
                continue
            if self._notifications:
                return P2PNotificationIncomingMessage(
                    self._node, body, ctxt, message)
            return P2PRpcIncomingMessage(self._node, src, body, ctxt,
                                         message)

    def stop(self) -> None:
        """Leave the directory; wake ``poll`` so it drains and returns."""
        self._stopped = True
        if self._subscribed:
            self._subscribed = False
            self._node.unsubscribe(self)
        self._queue.put(_STOP)

    def cleanup(self) -> None:
        if self._subscribed:
            self._subscribed = False
            self._node.unsubscribe(self)
