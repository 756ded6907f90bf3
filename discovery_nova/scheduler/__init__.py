"""nova-scheduler filters and weighers of discovery-nova.

Nova loads them by dotted path; list ``all_filters`` and ``all_weighers``
in ``[filter_scheduler] available_filters`` and ``weight_classes`` (see
``etc/nova/nova.conf.d/discovery-scheduler.conf``). Both enumerate the
stevedore namespaces below, so a plugin registered there by another
package is picked up too.
"""

import stevedore

FILTERS_NAMESPACE = 'discovery_nova.scheduler.filters'
WEIGHERS_NAMESPACE = 'discovery_nova.scheduler.weighers'


def _plugins(namespace: str) -> list[type]:
    def failed(manager, entry_point, exc):
        raise ImportError('cannot load %s plugin %s (%s): %s'
                          % (namespace, entry_point.name, entry_point.value,
                             exc)) from exc

    manager = stevedore.ExtensionManager(
        namespace, invoke_on_load=False, on_load_failure_callback=failed)
    return [extension.plugin for extension in
            sorted(manager, key=lambda e: e.name)]


def all_filters() -> list[type]:
    """Every filter class of the ``discovery_nova.scheduler.filters``
    namespace, for ``[filter_scheduler] available_filters``."""
    return _plugins(FILTERS_NAMESPACE)


def all_weighers() -> list[type]:
    """Every weigher class of the ``discovery_nova.scheduler.weighers``
    namespace, for ``[filter_scheduler] weight_classes``."""
    return _plugins(WEIGHERS_NAMESPACE)
