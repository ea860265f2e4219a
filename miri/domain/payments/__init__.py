"""Payments: one payment per order item, taken by a provider (the simulated buyer or a hosted
checkout with signed webhooks), refunded when goods come back."""
