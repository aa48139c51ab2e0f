"""Stored inferences → drift decisions: windows, frozen references, and the scheduler that
scores each due window with the fitted detectors (detectors.drift) and drives the alerts.
"""
