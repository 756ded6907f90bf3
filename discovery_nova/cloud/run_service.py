"""Run an installed console script (nova-conductor, ...) in this process.

The launcher starts nova's services through this module so that, on
sqlite, the writers' locking fix of :mod:`sqlite_locking` is in place
before the service opens its databases; the service itself is the
unchanged console script, looked up by name among the installed entry
points.

Usage: ``python -m discovery_nova.cloud.run_service NAME [ARG...]``.
"""

import importlib.metadata
import sys

from discovery_nova.cloud import sqlite_locking


def main() -> int:
    if len(sys.argv) < 2:
        print('usage: python -m discovery_nova.cloud.run_service NAME '
              '[ARG...]', file=sys.stderr)
        return 2
    name = sys.argv[1]
    found = importlib.metadata.entry_points(group='console_scripts',
                                            name=name)
    if not found:
        print('no console script named %r is installed' % name,
              file=sys.stderr)
        return 2
    # Loading imports the service's module first: nova's cmd modules apply
    # their concurrency set-up (monkey patching or not) at import.
    entry = next(iter(found)).load()
    sqlite_locking.install_if_requested()
    sys.argv = [name] + sys.argv[2:]
    return entry()


if __name__ == '__main__':
    sys.exit(main())
