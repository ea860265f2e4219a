"""Helpers shared by the tests: accounts, goods, servers, the dashboard."""
