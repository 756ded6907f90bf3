"""Make concurrent writers of one sqlite file wait instead of failing.

oslo.db turns pysqlite's own transaction handling off and emits a plain
(deferred) ``BEGIN`` itself. A deferred transaction that has read and then
wants to write cannot wait for another writer: sqlite answers
``SQLITE_BUSY`` at once, whatever the busy timeout, and nova logs
"database is locked" - a compute's first resource update can then leave a
half-written compute node. The services of one PoP (conductor, scheduler,
API, placement) share their sqlite files, so this happens on a busy
machine.

``install()`` registers a class-level SQLAlchemy ``begin`` listener that
runs before oslo.db's per-engine one and starts every transaction on such
a connection with ``BEGIN IMMEDIATE``: the write lock is taken up front,
so a second writer waits for it (up to the URL's ``timeout``) rather than
failing. It then sets oslo.db's own ``in_transaction`` marker so that
oslo.db does not emit a second ``BEGIN``. Only connections in oslo.db's
mode (pysqlite ``isolation_level`` None) are touched.

The launcher installs it in every service process when the cloud runs on
sqlite (environment variable ``DISCOVERY_NOVA_SQLITE_IMMEDIATE=1``).
"""

import os

ENV_FLAG = 'DISCOVERY_NOVA_SQLITE_IMMEDIATE'
_installed = False


def _begin_immediate(conn) -> None:
    if conn.dialect.name != 'sqlite' or 'in_transaction' in conn.info:
        return
    dbapi_conn = conn.connection.dbapi_connection
    if getattr(dbapi_conn, 'isolation_level', '') is not None:
        return
    conn.exec_driver_sql('BEGIN IMMEDIATE')
    conn.info['in_transaction'] = True


def install() -> None:
    """Register the listener once in this process."""
    global _installed
    if _installed:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    event.listen(Engine, 'begin', _begin_immediate)
    _installed = True


def uninstall() -> None:
    """Remove the listener (tests that installed it clean up with this)."""
    global _installed
    if not _installed:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    event.remove(Engine, 'begin', _begin_immediate)
    _installed = False


def install_if_requested() -> None:
    if os.environ.get(ENV_FLAG) == '1':
        install()
