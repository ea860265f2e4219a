"""Benchmarks: ``miri bench flash-sale`` (see ``flash_sale``) and the bare ceiling server."""
