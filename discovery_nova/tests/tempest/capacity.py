"""How many servers of a flavor a PoP still takes, from its placement.

The overflow scenario fills the entry PoP exactly, so it counts servers
per resource provider as placement would admit them: each provider takes
``((total - reserved) * allocation_ratio - used) // need`` of every
resource class the flavor needs, the smallest of those counts, and none
where the need is outside ``min_unit``..``max_unit``.
"""

from collections.abc import Iterable
from collections.abc import Mapping
import math


def flavor_resources(flavor: Mapping) -> dict[str, int]:
    """The placement resources nova asks for a server of ``flavor``."""
    swap = flavor.get('swap') or 0
    disk = (flavor.get('disk') or 0) + (
        flavor.get('OS-FLV-EXT-DATA:ephemeral') or 0) + math.ceil(
            int(swap) / 1024)
    wanted = {'VCPU': flavor['vcpus'], 'MEMORY_MB': flavor['ram'],
              'DISK_GB': disk}
    return {rc: int(amount) for rc, amount in wanted.items() if amount}


def fit_in_provider(need: Mapping[str, int], inventories: Mapping,
                    usages: Mapping) -> int:
    """Servers needing ``need`` that one resource provider still takes."""
    counts = []
    for rc, amount in need.items():
        inventory = inventories.get(rc)
        if not inventory:
            return 0
        if not (inventory.get('min_unit', 1) <= amount
                <= inventory.get('max_unit', amount)):
            return 0
        usable = int((inventory['total'] - inventory.get('reserved', 0))
                     * inventory.get('allocation_ratio', 1.0))
        counts.append(max(usable - int(usages.get(rc, 0)), 0) // amount)
    return min(counts) if counts else 0


def servers_that_fit(flavor: Mapping,
                     providers: Iterable[tuple[Mapping, Mapping]]) -> int:
    """Servers of ``flavor`` the (inventories, usages) providers take."""
    need = flavor_resources(flavor)
    return sum(fit_in_provider(need, inventories, usages)
               for inventories, usages in providers)
