"""Simulation of the overlay: production classes, virtual clock, RTT matrix."""
