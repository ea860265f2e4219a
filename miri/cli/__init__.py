"""The ``miri`` command: one file per command group."""
