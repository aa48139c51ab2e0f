"""Model performance: realised metrics once labels arrive, estimated ones before (CBPE),
degradation tests and subgroup comparisons; frozen results for the monitor, no I/O.
"""
