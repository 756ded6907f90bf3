"""Prefer hosts and PoPs that already hold the requested image.

A host holds an image when it runs a server booted from it (the image sits
in its image cache); a PoP holds it when one of its hosts does or when its
aggregate lists it in ``discovery_images`` (e.g. after
``openstack aggregate cache image``). The weight is the bytes that need not
be moved: the image size once for the PoP (no transfer over the backbone)
and once more for the host (no transfer at all).
"""

import bisect
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
import itertools
import operator
import sys

from nova.objects import base as obj_base

from discovery_nova.scheduler.base import LocalityWeigher
from discovery_nova.scheduler.request import HostList
from discovery_nova.scheduler.request import LocalityRequest


def requested_image(spec_obj) -> tuple[str | None, int]:
    """(image id, size in bytes) of a request; size 1 when unknown."""
    # Reading an unset field of a RequestSpec raises (no lazy load).
    if not spec_obj.obj_attr_is_set('image') or spec_obj.image is None:
        return None, 0
    image = spec_obj.image
    image_id = image.id if image.obj_attr_is_set('id') else None
    size = image.size if image.obj_attr_is_set('size') else None
    return image_id, size or 1


#: Where an Instance object keeps its image_ref when set: reading it with
#: a default is obj_attr_is_set('image_ref') plus the read, without the
#: field checks that make obj_attr_is_set cost microseconds per server.
#: Interned, as the attribute names in the objects' dicts are: a lookup
#: then finds the key by identity.
_IMAGE_REF = sys.intern(obj_base.get_attrname('image_ref'))
_VALUES = operator.methodcaller('values')


def hosts_holding(servers: Sequence[Mapping], image_id: str) -> list[int]:
    """Indexes of the hosts running a server booted from the image;
    ``servers[i]`` is the ``instances`` dict of host ``i``.

    Reading the servers of 10,000 hosts is most of a request's cost here:
    all of them in one C-level pass, and Python code only for the few hosts
    that hold the image.
    """
    try:
        # HostState.instances is a dict: its values without a method
        # lookup per host.
        refs = _image_refs(map(dict.values, servers))
    except TypeError:   # some other mapping
        refs = _image_refs(map(_VALUES, servers))
    if image_id not in refs:
        return []
    # Server k of the flattened list runs on the first host whose running
    # total of servers exceeds k.
    ends = list(itertools.accumulate(map(len, servers)))
    return sorted({bisect.bisect_right(ends, k) for k in itertools.compress(
        itertools.count(), map(operator.eq, refs,
                               itertools.repeat(image_id)))})


def _image_refs(servers: Iterable[Iterable]) -> list[str | None]:
    """The image_ref of every server, None where it is not set."""
    return list(map(getattr, itertools.chain.from_iterable(servers),
                    itertools.repeat(_IMAGE_REF), itertools.repeat(None)))


class ImageLocalityWeigher(LocalityWeigher):
    """Weigh hosts by the image bytes a boot on them would not move."""

    multiplier_option = 'image_locality_weight_multiplier'

    def weigh_hosts(self, request: LocalityRequest, hosts: HostList,
                    spec_obj) -> list[float]:
        groups = hosts.groups
        image_id, size = requested_image(spec_obj)
        if image_id is None:
            return [0.0] * len(groups)
        holding = hosts_holding(hosts.servers, image_id)
        pop_holds = {name for name, pop in request.directory.pops.items()
                     if image_id in pop.images}
        pop_holds.update(groups[i].name for i in holding
                         if groups[i].name is not None)
        in_pop = {group: group.name is not None and group.name in pop_holds
                  for group in hosts.distinct()}
        # Bytes not moved: the size once for the PoP, once more for the
        # host; the same weight for every host of a group but the holders.
        by_group = {group: float(size * (held + False))
                    for group, held in in_pop.items()}
        weights_ = list(map(by_group.__getitem__, groups))
        for i in holding:
            weights_[i] = float(size * (in_pop[groups[i]] + True))
        return weights_
