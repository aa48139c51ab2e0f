"""Helpers only tests and benchmarks use (never imported by a command): e.g. simulated
studies turned into the rows detection reads, without servers.
"""
