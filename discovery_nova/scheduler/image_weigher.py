"""Prefer hosts and PoPs that already hold the requested image.

A host holds an image when it runs a server booted from it (the image sits
in its image cache); a PoP holds it when one of its hosts does or when its
aggregate lists it in ``discovery_images`` (e.g. after
``openstack aggregate cache image``). The weight is the bytes that need not
be moved: the image size once for the PoP (no transfer over the backbone)
and once more for the host (no transfer at all).
"""

from nova.objects import base as obj_base

from discovery_nova.scheduler.base import LocalityWeigher
from discovery_nova.scheduler.request import HostGroup
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
_IMAGE_REF = obj_base.get_attrname('image_ref')


def host_holds(host_state, image_id: str) -> bool:
    for instance in host_state.instances.values():
        if getattr(instance, _IMAGE_REF, None) == image_id:
            return True
    return False


class ImageLocalityWeigher(LocalityWeigher):
    """Weigh hosts by the image bytes a boot on them would not move."""

    multiplier_option = 'image_locality_weight_multiplier'

    def weigh_hosts(self, request: LocalityRequest, host_states: list,
                    groups: list[HostGroup], spec_obj) -> list[float]:
        image_id, size = requested_image(spec_obj)
        if image_id is None:
            return [0.0] * len(host_states)
        on_host = [host_holds(h, image_id) for h in host_states]
        pop_holds = {name for name, pop in request.directory.pops.items()
                     if image_id in pop.images}
        pop_holds.update(group.name for group, held
                         in zip(groups, on_host, strict=True)
                         if held and group.name is not None)
        in_pop = {group: group.name is not None and group.name in pop_holds
                  for group in dict.fromkeys(groups)}
        return [float(size * (in_pop[group] + held))
                for group, held in zip(groups, on_host, strict=True)]
