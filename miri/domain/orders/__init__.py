"""Orders: placing (direct and from the wishlist), cancel, return, and the daily runs."""
