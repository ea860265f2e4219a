"""Users: sign-up with a mailed code, login and logout, profile, password change, roles.

Owns the ``users`` and ``email_verifications`` tables (SQL in ``store.py``); field rules shared
by the HTTP models and the CLI in ``rules.py``.
"""
