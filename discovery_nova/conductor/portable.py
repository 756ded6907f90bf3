"""Copies of nova objects that another PoP's database can take.

An object read from one PoP's database carries that database's row ``id``;
``create()`` at another PoP refuses an object with an id ("already
created"). The copy keeps every other field, nested objects included.
"""

from nova.objects import base as objects_base

_DB_ONLY = ('id',)


def portable(obj: objects_base.NovaObject,
             drop: tuple[str, ...] = _DB_ONLY) -> objects_base.NovaObject:
    """A copy of ``obj`` without the fields in ``drop`` (its row id),
    every field marked changed so that ``create()`` writes it."""
    primitive = obj.obj_to_primitive()
    data = primitive['nova_object.data']
    for field in drop:
        data.pop(field, None)
    # Every field counts as changed: create() writes only changed fields,
    # and at the other PoP all of them are new.
    primitive['nova_object.changes'] = sorted(data)
    return type(obj).obj_from_primitive(primitive)
