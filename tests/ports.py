"""Ports for agents started by the tests."""

import socket


def free_tcp_udp_port() -> int:
    """A port of 127.0.0.1 free for both TCP and UDP, as an overlay agent
    listens on both (queries over TCP, probes over UDP)."""
    for _ in range(50):
        with socket.socket() as tcp, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(('127.0.0.1', 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(('127.0.0.1', port))
            except OSError:
                continue
            return port
    raise RuntimeError('no port of 127.0.0.1 free for both TCP and UDP '
                       'after 50 tries')
