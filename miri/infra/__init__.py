"""What talks to the outside: SQLite, Redis, SMTP, keys, the clock."""
