"""Errors of the overlay, each saying what was wrong and what was expected."""


class OverlayError(Exception):
    """Base class of every error raised by the overlay."""


class InvalidMessage(OverlayError):
    """A message from the network is malformed; the sender is not trusted."""


class AuthenticationFailed(InvalidMessage):
    """A frame or datagram does not carry a valid deployment-key MAC."""


class MessageTooLarge(InvalidMessage):
    """A frame announces more bytes than ``max_message_bytes`` allows."""


class UnknownPeer(OverlayError):
    """A peer name that the overlay has never seen in membership."""


class RoutingFailed(OverlayError):
    """A routed request could not reach the node responsible for its key."""


class MembershipUnavailable(OverlayError):
    """The membership backend cannot be reached or refused the operation."""


class ConnectionClosed(OverlayError):
    """The peer closed an overlay connection (or it was closed locally)."""
