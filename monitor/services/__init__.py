"""Where the broker and database are: the embedded tansu broker and PostgreSQL for a one-box
pilot, or the configured ones of a health system.
"""
