"""Bad locality hints refused clearly: ERROR with a fault naming them."""

from tempest.lib import decorators
from tempest.lib.common.utils import data_utils

from discovery_nova.tests.tempest import base


class LocalityHintsNegativeTest(base.DiscoveryApiTest):
    """A malformed or unknown hint fails the build, not the API call.

    Nova's API lets any scheduler hint through; discovery-nova's conductor
    reads them and buries the server with a fault that names the hint,
    its value and what was expected.
    """

    def assertRefused(self, hint: str, value: str) -> str:
        server = self.boot(hints={hint: value}, wait_until='ERROR')[0]
        fault = (server.get('fault') or {}).get('message', '')
        self.assertIn('%s=%s' % (hint, value), fault)
        self.assertIn('expected', fault)
        return fault

    @decorators.attr(type=['negative'])
    @decorators.idempotent_id('8f728466-53fd-4326-ac67-a14e4a08137b')
    def test_max_rtt_ms_not_a_number(self):
        self.assertRefused('max_rtt_ms', 'abc')

    @decorators.attr(type=['negative'])
    @decorators.idempotent_id('7d40f6bd-8bdc-4f8d-ab84-72bd6f06695f')
    def test_pop_that_does_not_exist(self):
        unknown = data_utils.rand_name(name='no-such-pop')
        self.assertNotIn(unknown, self.pops.names)
        fault = self.assertRefused('pop', unknown)
        # The fault tells the user which PoPs would have done.
        self.assertIn(self.pops.entry, fault)
