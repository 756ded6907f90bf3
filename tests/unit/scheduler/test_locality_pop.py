"""PoP descriptors and their aggregate metadata form."""

import math

from hypothesis import given
from hypothesis import strategies as st
import pytest

from discovery_nova.locality import pop as pop_mod
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.locality.pop import PopMetadataError
from discovery_nova.overlay.coordinates import Coordinate

finite = st.floats(-1e4, 1e4, allow_nan=False)
names = st.from_regex(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,20}', fullmatch=True)
tags = st.from_regex(r'[A-Za-z0-9_.:-]{1,12}', fullmatch=True)


@given(name=names, vec=st.lists(finite, min_size=1, max_size=8),
       height=st.floats(0, 1e3), error=st.floats(0, 10),
       tag_set=st.frozensets(tags, max_size=4),
       share=st.none() | st.floats(0, 1), pue=st.none() | st.floats(1, 5),
       ram=st.none() | st.integers(0, 10**7))
def test_metadata_round_trip(name, vec, height, error, tag_set, share, pue,
                             ram):
    descriptor = PopDescriptor(name, Coordinate(tuple(vec), height), error,
                               tag_set, share, pue, frozenset({'img-1'}),
                               ram, None, {'fra1': 4.25, 'ams-2': 0.5})
    metadata = descriptor.to_metadata()
    # Nova caps metadata values at 255 characters.
    assert all(len(v) <= 255 for v in metadata.values())
    assert PopDescriptor.from_metadata(metadata) == descriptor


@pytest.mark.parametrize('key,value,expected', [
    (pop_mod.KEY_POP, 'bad name!', 'a PoP name'),
    (pop_mod.KEY_COORD, '1,2', 'a coordinate'),
    (pop_mod.KEY_COORD, '1,x;0', 'a coordinate'),
    (pop_mod.KEY_COORD, '1,2;-1', 'a coordinate'),
    (pop_mod.KEY_COORD, 'nan,1;0', 'a coordinate'),
    (pop_mod.KEY_ERROR, '-0.1', 'a number >= 0'),
    (pop_mod.KEY_RENEWABLE, '1.5', 'a number from 0 to 1'),
    (pop_mod.KEY_PUE, '0.9', 'a number >= 1'),
    (pop_mod.KEY_FREE_RAM, '-3', 'an integer >= 0'),
    (pop_mod.KEY_TAGS, 'a b', 'comma-separated tags'),
    (pop_mod.KEY_RTT, 'fra1=4', 'PoP:milliseconds pairs'),
    (pop_mod.KEY_RTT, 'fra1:-4', 'PoP:milliseconds pairs'),
    (pop_mod.KEY_RTT, 'fra1:4,:3', 'PoP:milliseconds pairs'),
])
def test_bad_metadata_names_key_value_and_form(key, value, expected):
    metadata = {pop_mod.KEY_POP: 'par1', key: value}
    with pytest.raises(PopMetadataError) as info:
        PopDescriptor.from_metadata(metadata)
    assert info.value.key == key
    assert repr(value) in str(info.value)
    assert expected in str(info.value)


def test_missing_fields_mean_unknown():
    descriptor = PopDescriptor.from_metadata({pop_mod.KEY_POP: 'par1'})
    assert descriptor.coordinate is None
    assert descriptor.error == pop_mod.UNKNOWN_ERROR
    assert descriptor.pue is None and descriptor.renewable_share is None


def test_tag_matching():
    descriptor = PopDescriptor('par1', tags=frozenset({'country:FR',
                                                       'renewable'}))
    assert descriptor.has_tag('country:FR')
    assert descriptor.has_tag('country')
    assert descriptor.has_tag('renewable')
    assert not descriptor.has_tag('country:DE')
    assert not descriptor.has_tag('renewable:yes')


def test_coordinate_text_is_exact():
    coord = Coordinate((0.1, -2.5e-7, math.pi), 0.3)
    assert pop_mod.parse_coordinate(pop_mod.format_coordinate(coord)) == coord
