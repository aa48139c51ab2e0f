"""The tamper-evident audit trail: the append-only hash chain, the catalogue of actions,
signed checkpoints, verification and the FHIR/CSV export.
"""
