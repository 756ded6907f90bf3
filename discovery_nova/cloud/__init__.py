"""A multi-PoP OpenStack cloud on one machine, for demos and e2e tests.

Each PoP is an independent Nova deployment (API, conductor, scheduler, fake
computes, placement) in its own processes; keystone (one region per PoP),
glance and an empty network API are shared.
"""
