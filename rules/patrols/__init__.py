"""Patrol rules: idle, out of grid, GPS lost, offline; coverage of assigned cells."""
