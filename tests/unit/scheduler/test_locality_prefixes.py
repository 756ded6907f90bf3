"""Client prefix table: longest prefix wins, strict parsing."""

import ipaddress

from hypothesis import given
from hypothesis import strategies as st
import pytest

from discovery_nova.locality.prefixes import PrefixTable
from discovery_nova.locality.prefixes import PrefixTableError


def test_longest_prefix_wins_and_families_do_not_mix():
    table = PrefixTable.parse([
        '10.0.0.0/8=wide', '10.1.0.0/16=narrow', '10.1.2.0/24=narrowest',
        '2001:db8::/32=six', '::/0=v6default'])
    look = lambda a: table.lookup(ipaddress.ip_address(a))  # noqa: E731
    assert look('10.1.2.3') == 'narrowest'
    assert look('10.1.3.3') == 'narrow'
    assert look('10.9.9.9') == 'wide'
    assert look('11.0.0.1') is None
    assert look('2001:db8::1') == 'six'
    assert look('2001:db9::1') == 'v6default'
    assert len(table) == 5


@pytest.mark.parametrize('item,expected', [
    ('10.0.0.0/8', 'expected CIDR=PoP'),
    ('10.0.0.1/8=a', 'no network in CIDR form'),
    ('banana=a', 'no network in CIDR form'),
    ('10.0.0.0/8=bad name', 'is no PoP name'),
])
def test_bad_entries(item, expected):
    with pytest.raises(PrefixTableError) as info:
        PrefixTable.parse([item])
    assert expected in str(info.value)
    assert repr(item) in str(info.value)


@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)),
                max_size=20),
       st.integers(0, 2**32 - 1))
def test_matches_brute_force(entries, address):
    networks = {}
    for value, length in entries:
        network = ipaddress.ip_network((value, length), strict=False)
        networks[network] = 'p%d' % length
    table = PrefixTable(networks.items())
    address = ipaddress.IPv4Address(address)
    holding = [n for n in networks if address in n]
    expected = (networks[max(holding, key=lambda n: n.prefixlen)]
                if holding else None)
    assert table.lookup(address) == expected
