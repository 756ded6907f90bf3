"""``discovery-conductor``: nova-conductor's service with our manager.

Started with the same arguments and nova.conf as nova-conductor, in its
place. It serves nova's ``conductor`` topic like nova-conductor does, and
also the ``discovery_conductor`` topic on the federation transport.
"""
# nova's conductor applies its concurrency set-up (native threads) before
# anything else is imported; ours must do the same.
from nova import monkey_patch  # noqa: I001

monkey_patch.patch(backend='threading')

import sys  # noqa: E402

from nova import config  # noqa: E402
from nova import objects  # noqa: E402
from nova import service  # noqa: E402
from nova import thread_pool_factory  # noqa: E402
from nova.conductor import rpcapi  # noqa: E402
import nova.conf  # noqa: E402
from oslo_concurrency import processutils  # noqa: E402
from oslo_log import log as logging  # noqa: E402

import discovery_nova.conf  # noqa: E402

CONF = nova.conf.CONF
MANAGER = ('discovery_nova.conductor.manager.'
           'DiscoveryConductorManager')


def main() -> None:
    config.parse_args(sys.argv)
    logging.setup(CONF, 'nova')
    discovery_nova.conf.validate(CONF)
    objects.register_all()
    objects.Service.enable_min_version_cache()
    server = service.Service.create(binary='nova-conductor',
                                    topic=rpcapi.RPC_TOPIC,
                                    manager=MANAGER)
    workers = CONF.conductor.workers or processutils.get_worker_count()
    thread_pool_factory.reset_all_executors()
    service.serve(server, workers=workers)
    service.wait()
