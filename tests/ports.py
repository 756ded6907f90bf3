"""Ports for the agents and peers started by the tests.

A port the kernel hands out for ``bind(port 0)`` comes from the ephemeral
range, where every outgoing connection of the machine also takes its
source port: between the moment a test picks such a port and the moment
its agent binds it, a connection made meanwhile (the tests make thousands)
may have taken it, and the agent fails with "address already in use". The
ports here come from below that range, which outgoing connections never
use, are checked free when picked, and are never handed out twice in one
process.
"""

import random
import socket

#: Ports handed out by this process.
_GIVEN: set[int] = set()
_RNG = random.Random()


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux), else the
    IANA one."""
    try:
        with open('/proc/sys/net/ipv4/ip_local_port_range') as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152


def _pick(udp_too: bool) -> int:
    high = _ephemeral_low() - 1
    low = max(1024, high - 12000)
    for _ in range(200):
        port = _RNG.randint(low, high)
        if port in _GIVEN:
            continue
        try:
            with socket.socket() as tcp:
                tcp.bind(('127.0.0.1', port))
            if udp_too:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind(('127.0.0.1', port))
        except OSError:
            continue
        _GIVEN.add(port)
        return port
    raise RuntimeError('no port of 127.0.0.1 below %d free after 200 tries'
                       % (high + 1))


def free_tcp_udp_port() -> int:
    """A port of 127.0.0.1 free for both TCP and UDP, as an overlay agent
    listens on both (queries over TCP, probes over UDP)."""
    return _pick(udp_too=True)


def free_tcp_port() -> int:
    """A port of 127.0.0.1 free for TCP (a p2p peer, a conductor)."""
    return _pick(udp_too=False)
