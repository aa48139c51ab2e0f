"""alibi-detect behind our detector contract: the only module that imports alibi_detect.

The online detector of the suite (fitted by fitting.py, stored by artifact.py, fed event by
event by monitor/drift/scheduler.py). alibi-detect ≥ 0.12 is under the Business Source
License 1.1 (see README), so it stays behind this one boundary, and its dict results are
converted to our typed `OnlineUpdate` here and nowhere else. The windowed detectors (mmd.py,
ks.py, chi2.py) need none of it.

alibi CVMDriftOnline (Ross & Adams 2012) runs on the scores and the embedding's first
principal component, with a configured expected run time; it turns into JSON parameters +
numpy arrays (`to_state`) and back (`from_state`) for the stored reference, and its running
state is saved with alibi's save_state and restored with load_state.
"""

from __future__ import annotations

import io
import math
import os
import tarfile
import tempfile
from typing import Any, Self

import numpy as np
import torch
from alibi_detect.cd import CVMDriftOnline
from alibi_detect.version import __version__ as ALIBI_VERSION

from detectors.drift.contract import Sample
from detectors.drift.results import OnlineUpdate
from detectors.drift.suite import SuiteConfig
from detectors.errors import InsufficientDataError

# Part of every fitted suite's fingerprint: the libraries its detectors' numbers come from
# (alibi for the online detector, torch for the MMD kernel).
BACKEND_VERSION = f"alibi-detect {ALIBI_VERSION}, torch {torch.__version__}"


class OnlineCVM:
    """alibi CVMDriftOnline on the scores and the embedding's first principal component.

    Thresholds depend only on reference size, window sizes and the expected run time (the
    statistic is rank-based), so they are configured once at fit; `update` is the only
    method that changes state, and `save_state`/`load_state` carry it across restarts.
    """

    signal = "online"
    name = "cvm_online"
    kind = "OnlineCVM"  # its name in a stored reference's manifest

    def __init__(self, config: SuiteConfig, embedding_signal: str | None) -> None:
        self.config = config
        self.embedding_signal = embedding_signal

    def _columns(self, sample: Sample) -> np.ndarray:
        cols = [sample.scalars.get("scores", {}).get(f) for f in self.score_features]
        mat = [np.asarray(c, dtype=float) if c is not None else np.full(len(sample), np.nan)
               for c in cols]  # fmt: skip
        if self.embedding_signal and self.pc is not None:
            vec = sample.vectors.get(self.embedding_signal)
            if vec is not None and vec.size:
                mat.append((vec - self.pc_mean) @ self.pc)
            else:
                mat.append(np.full(len(sample), np.nan))
        return np.column_stack(mat) if mat else np.empty((len(sample), 0))

    def fit(self, reference: Sample) -> Self:
        cfg = self.config
        self.score_features = sorted(reference.scalars.get("scores", {}))
        self.pc = None
        vec = reference.vectors.get(self.embedding_signal or "")
        if vec is not None and len(vec) >= 10 and np.isfinite(vec).all():
            self.pc_mean = vec.mean(0)
            # First principal component: the embedding direction of largest reference variance.
            _, _, vt = np.linalg.svd(vec - self.pc_mean, full_matrices=False)
            self.pc = vt[0]
        x = self._columns(reference)
        x = x[np.isfinite(x).all(1)] if x.size else x
        if x.shape[1] == 0 or len(x) < 2 * max(cfg.online_window_sizes):
            raise InsufficientDataError("online detector: too little reference data")
        rng = np.random.default_rng(cfg.seed + 2)
        if len(x) > cfg.online_reference:
            x = x[np.sort(rng.choice(len(x), cfg.online_reference, replace=False))]
        np.random.seed(cfg.seed + 3)  # alibi simulates null streams with the global generator
        # alibi estimates a (1 - 1/(d·ERT)) quantile and drops streams as they cross it, so
        # it needs several times d·ERT simulated streams.
        n_boot = max(cfg.online_bootstraps, int(3 * x.shape[1] * cfg.online_ert))
        self.detector = CVMDriftOnline(
            x, ert=cfg.online_ert, window_sizes=list(cfg.online_window_sizes),
            n_bootstraps=n_boot, verbose=False,
        )  # fmt: skip
        self.n_features = x.shape[1]
        return self

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The fitted detector as data: its reference rows and simulated thresholds.

        The running state (t, windows) is not part of a reference: detection keeps it in
        drift_online_state (`save_state`), and a freshly fitted detector has none.
        """
        d = self.detector
        params = {
            "embedding_signal": self.embedding_signal,
            "score_features": list(self.score_features),
            "n_features": self.n_features,
            "n_bootstraps": int(d.n_bootstraps),
            "has_pc": self.pc is not None,
        }
        arrays = {"x_ref": np.asarray(d.x_ref), "thresholds": np.asarray(d.thresholds)}
        if self.pc is not None:
            arrays |= {"pc": np.asarray(self.pc), "pc_mean": np.asarray(self.pc_mean)}
        return params, arrays  # fmt: skip

    @classmethod
    def from_state(
        cls, params: dict[str, Any], arrays: dict[str, np.ndarray], config: SuiteConfig
    ) -> Self:
        """Rebuilt with the stored thresholds: no stream is simulated again at load."""
        self = cls(config, params["embedding_signal"])
        self.score_features = [str(f) for f in params["score_features"]]
        self.pc = arrays["pc"] if params["has_pc"] else None
        if self.pc is not None:
            self.pc_mean = arrays["pc_mean"]
        self.n_features = int(params["n_features"])
        self.detector = _PresetCVM(
            arrays["x_ref"], arrays["thresholds"], ert=config.online_ert,
            window_sizes=list(config.online_window_sizes),
            n_bootstraps=int(params["n_bootstraps"]), verbose=False,
        )  # fmt: skip
        return self

    def update(self, sample: Sample) -> list[OnlineUpdate]:
        """Feed events in order; a firing resets the detector (alibi's guidance after drift)."""
        out = []
        x = self._columns(sample)
        for row in x:
            if not np.isfinite(row).all():
                continue
            pred = self.detector.predict(row.astype(np.float64), return_test_stat=True)["data"]
            fired = bool(pred["is_drift"])
            stat, thr = _max_or_nan(pred["test_stat"]), _max_or_nan(pred["threshold"])
            out.append(OnlineUpdate(self.name, self.signal, fired, int(pred["time"]), stat, thr))
            if fired:
                self.detector.reset_state()
        return out

    def save_state(self) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            self.detector.save_state(tmp)
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                tar.add(tmp, arcname="state")
            return buf.getvalue()

    def load_state(self, blob: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
                tar.extractall(tmp, filter="data")
            self.detector.load_state(os.path.join(tmp, "state"))

    def reset(self) -> None:
        self.detector.reset_state()


class _PresetCVM(CVMDriftOnline):
    """CVMDriftOnline whose thresholds come from a stored reference instead of simulation."""

    def __init__(self, x_ref: np.ndarray, thresholds: np.ndarray, **kwargs: Any) -> None:
        self._preset_thresholds = thresholds
        super().__init__(x_ref, **kwargs)

    def _configure_thresholds(self) -> None:
        # alibi calls this from __init__; the thresholds were simulated once, at fit.
        self.thresholds = self._preset_thresholds


def _max_or_nan(values: object) -> float:
    """Largest finite entry (the statistic is NaN until the online window fills)."""
    arr = np.atleast_1d(np.asarray(values, dtype=float))
    arr = arr[np.isfinite(arr)]
    return float(arr.max()) if arr.size else math.nan
