"""Physically based dual-pixel defocus simulation (work in progress)."""
