"""Configuration entries of the form ``CIDR=value``.

The client prefix table (``CIDR=PoP``) and the client probe targets
(``CIDR=host:port``) are written alike; both read an entry here, so a
malformed one is refused with the same words: which entry, what was wrong,
what is expected.
"""

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def split_cidr_entry(item: str, what: str, form: str,
                     error: type[ValueError]) -> tuple[Network, str]:
    """The network and the value's text of ``item``, a ``CIDR=value``.

    Raises ``error`` naming the entry as ``what`` (e.g. "client prefix")
    and the expected ``form`` (e.g. "CIDR=PoP, e.g. 192.0.2.0/24=pop1")
    when there is no ``=`` or the CIDR is no network (host bits set
    included).
    """
    cidr, sep, value = item.strip().partition('=')
    if not sep:
        raise error('%s %r: expected %s' % (what, item, form))
    try:
        network = ipaddress.ip_network(cidr.strip(), strict=True)
    except ValueError as exc:
        raise error('%s %r: %r is no network in CIDR form (%s)'
                    % (what, item, cidr, exc)) from None
    return network, value.strip()
