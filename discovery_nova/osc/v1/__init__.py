"""Commands of version 1 of the discovery plugin."""
