"""Network input never crashes a protocol's validator: only InvalidMessage.
"""

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import pytest

from discovery_nova.overlay import ring
from discovery_nova.overlay import spiral
from discovery_nova.overlay.envelope import check_envelope
from discovery_nova.overlay.errors import InvalidMessage

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) |
    st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)

VALIDATORS = [ring.validate_message, spiral.validate_message]
TYPES = list(ring.MESSAGE_TYPES) + list(spiral.MESSAGE_TYPES)


@pytest.mark.parametrize('validate', VALIDATORS)
@settings(max_examples=150, deadline=None)
@given(value=json_values)
def test_any_json_value_is_refused_cleanly(validate, value):
    try:
        validate(value)
    except InvalidMessage:
        pass


@pytest.mark.parametrize('validate', VALIDATORS)
@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(TYPES) | json_values,
       body=st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_messages_with_a_type_are_refused_cleanly(validate, kind, body):
    try:
        validate(dict(body, type=kind))
    except InvalidMessage:
        pass


@pytest.mark.parametrize('kind', [['x'], {'a': 1}, 3, None])
def test_a_type_that_is_not_text_names_the_field(kind):
    with pytest.raises(InvalidMessage, match="field 'type' must be one of"):
        check_envelope({'type': kind}, 'ring', {'ring.ack': ('type',)})


def test_missing_and_extra_fields_are_named():
    fields = {'p.x': ('type', 'a', 'b')}
    with pytest.raises(InvalidMessage, match="field 'b' is missing"):
        check_envelope({'type': 'p.x', 'a': 1}, 'p', fields)
    with pytest.raises(InvalidMessage, match="unexpected field 'c'"):
        check_envelope({'type': 'p.x', 'a': 1, 'b': 2, 'c': 3}, 'p', fields)
    assert check_envelope({'type': 'p.x', 'a': 1, 'b': 2}, 'p',
                          fields) == 'p.x'
