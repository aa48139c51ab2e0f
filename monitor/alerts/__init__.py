"""The alert lifecycle shared by drift and performance (open, update, acknowledge, resolve)
and Alertmanager's webhook, received back into the audit trail.
"""
