"""Every option of discovery-nova, for ``oslo-config-generator``.

Exposed through the ``oslo.config.opts`` entry point ``discovery_nova``.
"""

from discovery_nova.conf import _MODULES


def list_opts() -> list:
    """Return ``[(group, [opts]), ...]`` for every option module."""
    listed = []
    for module in _MODULES:
        for group, opts in module.list_opts().items():
            listed.append((group, opts))
    return listed
