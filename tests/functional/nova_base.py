"""Base for functional tests that run real Nova in-process.

Nova's own functional harness ships in the nova wheel (``nova.tests``:
``nova.tests.functional.integrated_helpers``, ``nova.tests.fixtures``, the
placement fixture): API, conductor, scheduler and fake-driver computes run
in this process over oslo.messaging's fake transport, with in-memory
databases. This is the one place where discovery-nova depends on that
harness; test classes subclass ``NovaFunctionalTestCase``.

Two adjustments make it run under pytest:

* ``nova.test.TestCase`` registers ``_clear_attrs`` as a cleanup that
  deletes every public attribute of the test case, to save memory in long
  stestr runs. pytest 9's unittest integration looks the test method up on
  the instance after the cleanups ran, so every test fails with
  ``AttributeError: ... has no attribute 'test_...'``; the override keeps
  the attributes.
* The wheel installs ``api-paste.ini`` as a data file
  (``<prefix>/etc/nova/api-paste.ini``), not where the harness looks for it
  (next to the source tree); ``_setup_services`` points the API at it.
* Nova's WarningsFixture turns SQLAlchemy deprecation warnings into
  errors, and nova 34's own ``noload()`` calls warn under SQLAlchemy 2.1:
  that one warning is let through (only for the test's duration, as the
  fixture restores the filters afterwards).
* The harness is slow to set up (a few seconds per test method), so classes
  should keep their methods few and do several checks in each.
"""

import os
import sysconfig
import warnings

from keystoneauth1 import session as ks_session
from keystoneauth1 import token_endpoint
from nova.tests.functional import integrated_helpers
import openstack
from sqlalchemy import exc as sqla_exc

#: Where pip put nova's paste pipeline of the API.
API_PASTE_INI = os.path.join(sysconfig.get_path('data'), 'etc', 'nova',
                             'api-paste.ini')


class NovaFunctionalTestCase(integrated_helpers._IntegratedTestBase):
    """An in-process Nova (API, conductor, scheduler, placement, computes).
    """

    # Our tests take no external locks (lockutils) of their own.
    REQUIRES_LOCKING = False
    ADMIN_API = True
    microversion = 'latest'

    def _clear_attrs(self):
        """Keep the attributes: pytest reads them after the cleanups."""

    def _setup_services(self):
        self.flags(api_paste_config=API_PASTE_INI, group='wsgi')
        warnings.filterwarnings(
            'ignore', message=r'The noload\(\) option is deprecated',
            category=sqla_exc.SADeprecationWarning)
        super()._setup_services()

    def openstacksdk(self) -> openstack.connection.Connection:
        """openstacksdk on the in-process API, as the overlay agent would
        use it (e.g. ``AggregateSync`` writing the PoP aggregates).

        The harness intercepts ``requests`` for its API endpoint and
        authenticates by headers, so a token plugin pointing at that
        endpoint plus the headers of its admin client is all it takes.
        """
        admin = self.admin_api
        session = ks_session.Session(
            auth=token_endpoint.Token(admin.base_url, 'admin'),
            additional_headers={'X-Auth-User': admin.auth_user,
                                'X-Auth-Project-Id': admin.project_id,
                                'X-Roles': ','.join(admin.roles)})
        return openstack.connection.Connection(session=session,
                                               compute_api_version='2')
