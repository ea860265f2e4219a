"""Miri: a small-footprint pre-order and flash-sale shop."""

__version__ = "0.1.0"
