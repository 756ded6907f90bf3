"""The functional test process is patched before oslo.db's thread-locals
exist (see conftest.py): the transaction state of a request context is
then per greenthread, as in a nova service."""

import eventlet.corolocal
from oslo_db.sqlalchemy import enginefacade
import pytest

pytestmark = pytest.mark.functional


def test_transaction_state_is_per_greenthread():
    assert issubclass(enginefacade._TransactionContextTLocal,
                      eventlet.corolocal.local)
