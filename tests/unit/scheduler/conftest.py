"""Each test starts from default options and empty per-request caches."""

import pytest

import discovery_nova.conf
from discovery_nova.scheduler import request


@pytest.fixture(autouse=True)
def clean_state():
    conf = discovery_nova.conf.CONF
    request._CACHE.clear()
    yield conf
    conf.clear_override('pop_name', group='discovery')
    for opt in ('client_prefixes', 'rtt_error_weight', 'max_trusted_error',
                'proximity_weight_multiplier', 'energy_weight_multiplier',
                'image_locality_weight_multiplier', 'default_pue'):
        conf.clear_override(opt, group='discovery_scheduler')
    request._CACHE.clear()
