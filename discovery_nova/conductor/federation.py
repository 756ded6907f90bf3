"""The conductor-to-conductor link: one RPC topic on a transport of its own.

Every PoP's conductor serves ``discovery_conductor`` with its PoP name as
the server, on ``[discovery_conductor] federation_transport_url`` (the p2p
driver by default, so there is no broker between PoPs either). Nova
objects travel with nova's own serializer, so a RequestSpec or an Instance
arrives as the object it left as, and the caller's RequestContext with it.
"""

import time

from nova import objects
from nova import rpc as nova_rpc
from nova.objects import base as objects_base
from oslo_log import log as logging
import oslo_messaging as messaging

LOG = logging.getLogger(__name__)

TOPIC = 'discovery_conductor'
#: Bumped when a method's arguments change incompatibly.
VERSION = '1.0'


class FederationUnavailable(RuntimeError):
    """No federation transport is configured, or it cannot be used."""


def _serializer():
    return nova_rpc.RequestContextSerializer(
        objects_base.NovaObjectSerializer())


class Federation:
    """The federation transport of one conductor: its server and clients.

    ``emulated_rtt_ms`` adds a round trip's delay to every call to the
    named PoPs (test beds that run several PoPs on one machine).
    """

    def __init__(self, conf, pop_name: str, url: str,
                 emulated_rtt_ms: dict[str, float] | None = None):
        if not url:
            raise FederationUnavailable(
                '[discovery_conductor] federation_transport_url is not set; '
                'expected e.g. p2p://host1:port1,host2:port2/')
        objects.register_all()
        try:
            self.transport = messaging.get_rpc_transport(conf, url=url)
        except (messaging.InvalidTransportURL,
                messaging.DriverLoadFailure) as exc:
            raise FederationUnavailable(
                '[discovery_conductor] federation_transport_url cannot be '
                'used: %s; expected p2p://host:port,... or rabbit://...'
                % exc) from exc
        self.pop_name = pop_name
        self.emulated_rtt_ms = dict(emulated_rtt_ms or {})
        self._server = None
        self._before_stop: list = []

    def before_stop(self, hook) -> None:
        """Call ``hook()`` first when the federation stops: the work that
        calls other PoPs (queued offers) ends while it still can."""
        self._before_stop.append(hook)

    def serve(self, endpoint) -> None:
        """Start answering other PoPs with ``endpoint``'s methods."""
        target = messaging.Target(topic=TOPIC, server=self.pop_name,
                                  version=VERSION)
        self._server = messaging.get_rpc_server(
            self.transport, target, [endpoint], executor='threading',
            serializer=_serializer())
        self._server.start()
        LOG.info("Federation: PoP %(pop)s serves topic %(topic)s",
                 {'pop': self.pop_name, 'topic': TOPIC})

    def call(self, context, pop: str, method: str, timeout: float, *,
             long_poll: bool = False, **kwargs):
        """Call ``method`` at PoP ``pop``; raises MessagingTimeout etc.

        The emulated round trip is paid before the call; for a
        ``long_poll`` (answered when something happened there) half of it
        is paid after the answer instead, as the answer's trip back.
        """
        delay = self.emulated_rtt_ms.get(pop, 0.0) / 1000.0
        before = delay / 2 if long_poll else delay
        if before > 0:
            time.sleep(before)
        client = messaging.get_rpc_client(
            self.transport, messaging.Target(topic=TOPIC, server=pop,
                                             version=VERSION),
            serializer=_serializer(), timeout=timeout)
        answer = client.call(context, method, **kwargs)
        if delay - before > 0:
            time.sleep(delay - before)
        return answer

    def stop(self) -> None:
        hooks, self._before_stop = self._before_stop, []
        for hook in hooks:
            try:
                hook()
            except Exception:
                LOG.exception("Stopping what uses the federation failed")
        if self._server is not None:
            self._server.stop()
            self._server.wait()
            self._server = None
        self.transport.cleanup()
