"""Tests shipped with the package, for tools that load them from it.

Only the tempest plugin (``discovery_nova.tests.tempest``) lives here: it
runs against a deployed cloud, so it is installed with discovery-nova. The
project's own unit, functional and end-to-end tests are in the top-level
``tests`` directory of the source tree and are not installed.
"""
