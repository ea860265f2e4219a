"""The read side: the only code allowed to join across modules' tables.

Every other module reads and writes only its own tables (through its store) and reaches the
others through their services or events. Listings that must span modules (my orders with goods
names, a seller's sales, admin stats, "my page", the dashboard's figures, the benchmark's checks)
are plain queries here, one file per audience. They only read; nothing here writes.
"""
