"""Locality scoring shared by nova-scheduler plugins and the conductor.

Nothing here imports Nova: the scheduler's filters and weighers and the
conductor ranking remote PoPs both describe PoPs with ``PopDescriptor``,
estimate round-trip times with ``estimate_rtt`` and read user hints with
``parse_hints``, so a request is judged the same way at every level.
"""
