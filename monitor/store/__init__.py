"""PostgreSQL: connections, retries and the versioned schema migrations (`radwatch db migrate`).

The bottom of monitor: every other sub-package reads and writes through `store.db`.
"""
