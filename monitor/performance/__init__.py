"""Delayed radiologists' labels joined to stored inferences → realised and estimated
performance per window (detectors.performance), stored, and alerted on.
"""
