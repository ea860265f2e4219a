"""One route table per module."""
