"""IFAN networks, their configurations and weights."""
