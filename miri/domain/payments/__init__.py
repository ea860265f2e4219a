"""Payments: one payment per order item, walked through a gateway, refunded on cancel."""
