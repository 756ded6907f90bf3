"""Prepare one PoP's nova databases in a single process.

The same steps as ``nova-manage api_db sync``, ``cell_v2 map_cell0``,
``cell_v2 create_cell --name cell1`` and ``db sync``, called through
nova-manage's own command classes: one interpreter start instead of four,
which is most of their cost on a busy machine.

Usage: ``python -m discovery_nova.cloud.nova_setup NOVA_CONF CELL0_URL``.
"""

# nova-manage's module applies nova's monkey patching at import; it has to
# come first, as in nova's own console script.
from nova.cmd import manage  # noqa: I001

import sys

from nova import config
from nova import objects
from oslo_config import cfg
from oslo_log import log as logging

from discovery_nova.cloud import sqlite_locking

LOG = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print('usage: python -m discovery_nova.cloud.nova_setup NOVA_CONF '
              'CELL0_URL', file=sys.stderr)
        return 2
    nova_conf, cell0_url = argv
    config.parse_args(['nova-setup', '--config-file', nova_conf])
    logging.setup(cfg.CONF, 'nova')
    objects.register_all()
    sqlite_locking.install_if_requested()
    cells = manage.CellV2Commands()
    steps = (
        ('api_db sync', manage.ApiDbCommands().sync),
        ('cell_v2 map_cell0',
         lambda: cells.map_cell0(database_connection=cell0_url)),
        ('cell_v2 create_cell', lambda: cells.create_cell(name='cell1')),
        ('db sync', manage.DbCommands().sync),
    )
    for label, step in steps:
        result = step()
        if result not in (None, 0):
            print('nova-manage %s failed with code %s' % (label, result),
                  file=sys.stderr)
            return 1
        LOG.info("nova-manage %(step)s: done", {'step': label})
    return 0


if __name__ == '__main__':
    sys.exit(main())
