"""Contracts every service imports: numpy-only, no torch, no simulator."""
