"""A tempest plugin: locality hints and overflow checked on a live cloud.

Registered as the ``discovery_tests`` entry point of ``tempest.test_plugins``
and run with ``tempest run --regex discovery`` against any cloud whose
PoPs run discovery-nova, each PoP a keystone region.
"""
