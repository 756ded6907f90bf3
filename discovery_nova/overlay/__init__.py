"""The locality overlay: coordinates, nearest-peer search, routing, membership.

Nothing in this package imports Nova. Protocol code here is written against
two small interfaces (``endpoint.Endpoint`` for sending messages and reading
the clock, ``probe.Prober`` for measuring round-trip times) so that the same
classes run in the per-PoP agent over real sockets and in the simulator under
a virtual clock over an RTT matrix.
"""
