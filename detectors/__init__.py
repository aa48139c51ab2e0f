"""Pure computation between the collected data and the monitor's decisions: arrays and tensors
in, typed results out, no I/O (DESIGN.md §3). embedding/ turns pixels into vectors and
image-quality features, drift/ tests windows against a fitted reference, performance/ judges
the model against labels; every error is a `detectors.errors.DetectorError`.
"""
