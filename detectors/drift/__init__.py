"""Drift tests: a window of studies against a fitted reference → typed `DriftResult`s.

contract.py (the `Sample` and what a detector gives), one windowed detector per module
(mmd.py, ks.py, chi2.py) listed in registry.py, the online detector behind alibi_backend.py
(the only module that imports alibi-detect), the suite (suite.py) that fitting.py fits and
artifact.py stores as data; results, multiple testing, the drift score and the onset beside.
"""
