"""Backends: one folder per target family (x86, Hexagon) that turns an integer Relax
module into a runnable module."""
