"""Fail loudly when oslo.messaging's private driver API moves.

``oslo_messaging._drivers.base`` is not public: the p2p driver subclasses
it, and ``requirements.txt`` pins the range checked here. A failure below
names what changed, so the driver is fixed before the pin is widened.
"""

import inspect
import sys

import oslo_messaging
from oslo_messaging._drivers import base
from oslo_messaging._drivers import common as rpc_common
import pytest
import stevedore

from discovery_nova.messaging import driver
from discovery_nova.messaging import listener

EXPECTED_SIGNATURES = {
    (base.BaseDriver, '__init__'):
        '(self, conf, url, default_exchange=None, '
        'allowed_remote_exmods=None)',
    (base.BaseDriver, 'send'):
        '(self, target, ctxt, message, wait_for_reply=None, timeout=None, '
        'call_monitor_timeout=None, retry=None, transport_options=None)',
    (base.BaseDriver, 'send_notification'):
        '(self, target, ctxt, message, version, retry)',
    (base.BaseDriver, 'listen'): '(self, target, batch_size, batch_timeout)',
    (base.BaseDriver, 'listen_for_notifications'):
        '(self, targets_and_priorities, pool, batch_size, batch_timeout)',
    (base.BaseDriver, 'require_features'): '(self, requeue=False)',
    (base.BaseDriver, 'cleanup'): '(self)',
    (base.IncomingMessage, '__init__'): '(self, ctxt, message, msg_id=None)',
    (base.RpcIncomingMessage, 'reply'): '(self, reply=None, failure=None)',
    (base.RpcIncomingMessage, 'heartbeat'): '(self)',
    (base.PollStyleListener, '__init__'): '(self, prefetch_size=-1)',
    (base.PollStyleListener, 'poll'):
        '(self, timeout=None, batch_size=1, batch_timeout=None)',
    (base.PollStyleListenerAdapter, '__init__'):
        '(self, poll_style_listener, batch_size, batch_timeout)',
    (rpc_common, 'serialize_remote_exception'): '(failure_info)',
    (rpc_common, 'deserialize_remote_exception'):
        '(data, allowed_remote_exmods)',
}


@pytest.mark.parametrize('owner,name', sorted(
    EXPECTED_SIGNATURES, key=lambda k: (getattr(k[0], '__name__', ''), k[1])))
def test_private_driver_api_signature_unchanged(owner, name):
    actual = str(inspect.signature(getattr(owner, name)))
    assert actual == EXPECTED_SIGNATURES[(owner, name)], (
        'oslo.messaging %s changed %s.%s to %s: adapt '
        'discovery_nova.messaging before widening the pin'
        % (oslo_messaging.__name__, getattr(owner, '__name__', owner),
           name, actual))


def test_abstract_methods_are_the_ones_the_driver_implements():
    assert base.BaseDriver.__abstractmethods__ == {
        'send', 'send_notification', 'listen', 'listen_for_notifications',
        'cleanup'}
    assert base.RpcIncomingMessage.__abstractmethods__ == {
        'reply', 'heartbeat', 'requeue'}
    assert base.PollStyleListener.__abstractmethods__ == {'poll'}
    for cls in (driver.P2PDriver, listener.P2PRpcIncomingMessage,
                listener.P2PNotificationIncomingMessage,
                listener.P2PListener):
        assert not cls.__abstractmethods__, cls


def test_batch_poll_helper_still_exists():
    assert callable(base.batch_poll_helper)


def test_driver_is_loadable_by_its_entry_point():
    manager = stevedore.DriverManager('oslo.messaging.drivers', 'p2p',
                                      invoke_on_load=False)
    assert manager.driver is driver.P2PDriver


def test_remote_exception_round_trip_keeps_the_type():
    try:
        raise KeyError('missing')
    except KeyError:
        data = rpc_common.serialize_remote_exception(sys.exc_info())
    error = rpc_common.deserialize_remote_exception(data, [])
    assert isinstance(error, KeyError)
