"""Simulated studies → the rows detection reads, in memory: the collector's path minus servers.

Beside the demo (monitor/pilot): the Python API's `simulate`, and statistical tests and
benchmarks that need thousands of windows. Each study of the synthetic hospital (collectors.simulator.stream) goes through what
`radwatch collect` does to it: the event is parsed and pseudonymised (collectors.events),
its DICOM object is decoded by radwatch's reader and its tags merged (as the image stage
does), the image-quality features and the default encoder's embedding are computed (as the
embedding stage does), and it becomes the `EventRow` that `fetch_events` would return from
PostgreSQL. Kafka, PostgreSQL and the files on disk are skipped; no step that changes a value.

Studies a scenario leaves untouched are identical to the no-shift stream's (the simulator
makes the same draws whatever the scenario, see collectors.simulator.study), so
`ScenarioStreams` renders each seed's no-shift stream once and re-renders only the studies a
scenario changes: eight scenarios cost about twice one stream, not eight times.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from types import MappingProxyType
from typing import TypeVar

import numpy as np

from collectors.events import INFERENCE_SCHEMA, InferenceEvent, parse_record
from collectors.images.dicom_reader import DEFAULT_SIZE, read_dicom_bytes
from collectors.pseudonym import Pseudonymiser
from collectors.simulator.fleet import NEW_VENDOR, SCANNERS
from collectors.simulator.scenarios import scenario as scenario_named
from collectors.simulator.study import StudyPlan, dicom_bytes, plan_study
from detectors.drift.contract import CALL_PREFIX
from monitor.drift.windows import EventRow

# A fixed key: these rows never carry real identifiers, and equal keys make runs comparable.
SIMULATION_KEY = b"radwatch-simulated-rows-not-a-secret"
THUMBNAIL = 32  # side of the raw-pixel thumbnail kept for peers that test pixels directly
_CHUNK = 32  # studies per model / encoder batch
T = TypeVar("T")


@dataclass(frozen=True)
class SimulatedRow:
    row: EventRow
    affected: bool  # the scenario changed this study
    # Stored values ÷ (2^BitsStored − 1), area-downsampled: the "raw pixels" a naive
    # monitor would test (no VOI LUT, MONOCHROME1 not inverted).
    thumbnail: np.ndarray


class RowMaker:
    """The deployed model, the collector's reader and the default encoder, loaded once."""

    def __init__(self, image_size: int = DEFAULT_SIZE) -> None:
        from collectors.simulator.model import load_deployed
        from detectors.embedding.encoders import default_encoder

        self.model = load_deployed()
        self.embedder = default_encoder()
        self.pseudonym = Pseudonymiser(SIMULATION_KEY)
        self.image_size = image_size

    def rows(self, plans: Sequence[StudyPlan]) -> list[SimulatedRow]:
        import torch

        from collectors.simulator.stream import scan_and_score, study_event
        from monitor.ingest.embedding_stage import features_of

        out: list[SimulatedRow] = []
        for start in range(0, len(plans), _CHUNK):
            chunk = plans[start : start + _CHUNK]
            stored, scores, embeddings = scan_and_score(chunk, self.model)
            events, images, thumbs = [], [], []
            for plan, pixels, score, emb in zip(chunk, stored, scores, embeddings, strict=True):
                uri = f"file:///simulated/seed{plan.seed}/{plan.index:07d}.dcm"
                study = study_event(plan, uri, float(score), emb, True, pixels.shape)
                event = parse_record(study.inference_bytes(), default_schema=INFERENCE_SCHEMA,
                                     pseudonym=self.pseudonym, max_bytes=1 << 20)  # fmt: skip
                if not isinstance(event, InferenceEvent):
                    raise ValueError(f"the simulator wrote an invalid event: {event}")
                events.append(event)
                images.append(read_dicom_bytes(dicom_bytes(plan, pixels), self.image_size,
                                               pseudonym=self.pseudonym))  # fmt: skip
                scaled = pixels.astype(np.float32) / float(2**plan.scanner.bits_stored - 1)
                small = torch.nn.functional.adaptive_avg_pool2d(
                    torch.from_numpy(scaled)[None, None], THUMBNAIL
                )
                thumbs.append(small[0, 0].numpy())
            vectors = self.embedder.embed([im.pixels for im in images])
            for plan, event, image, vector, thumb in zip(
                chunk, events, images, vectors, thumbs, strict=True
            ):
                row = EventRow(
                    event.event_id, event.occurred_at, event.study.study, event.site,
                    event.model_version, {**event.dicom, **image.tags}, dict(event.scores),
                    list(event.embedding) if event.embedding is not None else None,
                    # PostgreSQL stores vectors as real[]: float32, as here.
                    [float(v) for v in np.asarray(vector, dtype=np.float32)],
                    features_of(image), dict(event.thresholds),
                )  # fmt: skip
                out.append(SimulatedRow(row, plan.affected, thumb))
        return out


_MAKER: RowMaker | None = None


def _render(seed: int, indices: Sequence[int], scenario: str, severity: float,
            onset: int) -> list[SimulatedRow]:  # fmt: skip
    """Worker entry point: one process keeps one RowMaker (weights load once)."""
    global _MAKER
    if _MAKER is None:
        import torch

        torch.set_num_threads(1)  # one process per core does the parallelism
        _MAKER = RowMaker()
    plans = [plan_study(seed, i, scenario_name=scenario, onset=onset, severity=severity,
                        label_share=0.0) for i in indices]  # fmt: skip
    return _MAKER.rows(plans)


def _changed(seed: int, n: int, scenario: str, severity: float, onset: int) -> list[int]:
    """Worker entry point: the indices among 0..n-1 whose study `scenario` changes.

    Planning is pure and costs ~0.2 ms a study (twice here): done in the workers, it runs
    beside the rendering instead of before it in the parent.
    """
    changed = []
    for i in range(n):
        plan = plan_study(seed, i, scenario_name=scenario, onset=onset, severity=severity,
                          label_share=0.0)  # fmt: skip
        if plan.affected:
            changed.append(i)
        elif plan != plan_study(seed, i, label_share=0.0):
            # The sharing rests on this; fail loudly if the simulator ever breaks it.
            raise AssertionError(f"{scenario}: unaffected study {seed}/{i} differs")
    return changed


class ScenarioStreams:
    """Post-onset streams per (seed, scenario), sharing the unaffected studies across scenarios.

    Study indices 0..n-1 of each seed; the scenario starts at index `onset` (0: the whole
    stream is after the onset). Rendering runs in `workers` processes (spawned, so torch's
    thread pools are never forked).
    """

    def __init__(
        self, *, severity: float = 0.5, onset: int = 0, workers: int | None = None
    ) -> None:
        self.severity = severity
        self.onset = onset
        self.workers = workers or min(4, os.cpu_count() or 1)
        self._none: dict[int, list[SimulatedRow]] = {}
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> ScenarioStreams:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def _submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        if self.workers == 1:
            done: Future[T] = Future()
            done.set_result(fn(*args))
            return done
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))
        return self._pool.submit(fn, *args)

    def _map(self, jobs: list[tuple[int, list[int], str]]) -> list[list[SimulatedRow]]:
        futures = [self._submit(_render, s, idx, sc, self.severity, self.onset)
                   for s, idx, sc in jobs]  # fmt: skip
        return [f.result() for f in futures]

    def baseline(self, seeds: Sequence[int], n: int) -> dict[int, list[SimulatedRow]]:
        """The no-shift stream of each seed (rendered once, then kept)."""
        jobs: list[tuple[int, list[int], str]] = []
        for s in seeds:
            have = len(self._none.get(s, ()))
            jobs += [(s, list(range(start, min(n, start + _CHUNK * 2))), "none")
                     for start in range(have, n, _CHUNK * 2)]  # fmt: skip
        for (seed, _, _), rows in zip(jobs, self._map(jobs), strict=True):
            self._none.setdefault(seed, []).extend(rows)
        return {s: self._none[s][:n] for s in seeds}

    def streams(self, scenario: str, seeds: Sequence[int], n: int) -> dict[int, list[SimulatedRow]]:
        """Each seed's stream under `scenario`: the baseline with the changed studies redone."""
        # Which studies the scenario changes is found in the workers, queued ahead of the
        # baseline's rendering; each seed's re-rendering is queued as soon as its list is
        # back: the workers are never idle while the parent plans.
        planned = [] if scenario == "none" else [
            (seed, self._submit(_changed, seed, n, scenario, self.severity, self.onset))
            for seed in seeds
        ]  # fmt: skip
        base = self.baseline(seeds, n)
        jobs: list[tuple[int, list[int], Future[list[SimulatedRow]]]] = []
        for seed, plan in planned:
            changed = plan.result()
            for k in range(0, len(changed), _CHUNK):
                idx = changed[k : k + _CHUNK]
                job = self._submit(_render, seed, idx, scenario, self.severity, self.onset)
                jobs.append((seed, idx, job))
        out = {s: list(rows) for s, rows in base.items()}
        for seed, idx, job in jobs:
            for i, r in zip(idx, job.result(), strict=True):
                out[seed][i] = r
        return out


# The kind of shift each scenario is (the incident's shift type, monitor/alerts/grouping.py),
# read from its description in collectors.simulator.scenarios, not from grouping's rules: a
# device, software or protocol change is acquisition; images that reach the model inverted are
# integration; who or what is imaged (views, ages) is population; a case-mix change with
# unchanged images is prevalence. A scenario missing here is a KeyError, not a silent pass.
EXPECTED_SHIFT_TYPE: Mapping[str, str] = MappingProxyType({
    "none": "unknown",  # no shift: any incident is a false one, nothing to name
    "software_update": "acquisition",  # SoftwareVersions and the tone curve of one scanner
    "new_vendor": "acquisition",  # another manufacturer's scanner at one site
    "dose_change": "acquisition",  # exposure lowered on one scanner
    "resolution_change": "acquisition",  # binned read-out on one scanner
    "inversion_bug": "integration",  # MONOCHROME1 fed to a pipeline that ignores it
    "lateral_leak": "population",  # lateral views routed to a frontal-only model
    "paediatric": "population",  # children at an adult service
    "prevalence_change": "prevalence",  # more nodules, the same images per class
})  # fmt: skip


@dataclass(frozen=True)
class ExpectedFinding:
    """How a scenario should look to detection: where, which signal, which features lead, and
    which kind of shift its incident should name."""

    strata: frozenset[tuple[str, str]]  # (kind, value), as monitor.drift.windows names strata
    signal: str
    features: frozenset[str]
    shift_type: str


def expected_finding(name: str) -> ExpectedFinding:
    """Read from the scenario table (collectors.simulator.scenarios): the site and/or scanner
    it names (the whole model when it names neither), the DICOM attributes it changes under
    the "acquisition" signal, or, when it changes none (prevalence), the model's score; the
    shift type from EXPECTED_SHIFT_TYPE."""
    sc = scenario_named(name)
    where: set[tuple[str, str]] = set()
    site, model = sc.stratum.get("site"), sc.stratum.get("ManufacturerModelName")
    if site:
        where.add(("site", site))
    if model:
        where |= {("scanner", f"{s.manufacturer} {s.model}") for s in SCANNERS
                  if s.model == model and (site is None or s.site == site)}  # fmt: skip
    strata = frozenset(where or {("all", "all")})
    kind = EXPECTED_SHIFT_TYPE[name]
    if sc.attributes:
        return ExpectedFinding(strata, "acquisition", frozenset(sc.attributes), kind)
    return ExpectedFinding(strata, "scores", frozenset({"nodule", CALL_PREFIX + "nodule"}), kind)


def names_scenario(name: str, root: tuple[str, str], shift_type: str) -> bool:
    """Whether an incident's root cause and shift type are the scenario's: its stratum or one
    inside it (a scanner at its site, as monitor/alerts/grouping.py nests them), and its
    EXPECTED_SHIFT_TYPE."""
    want = expected_finding(name)
    if shift_type != want.shift_type:
        return False
    if root in want.strata or ("all", "all") in want.strata:
        return True
    sites = {value for kind, value in want.strata if kind == "site"}
    return root[0] == "scanner" and any(root[1] == f"{s.manufacturer} {s.model}" and s.site in sites
                                        for s in (*SCANNERS, NEW_VENDOR))  # fmt: skip


def rows_of(items: Sequence[SimulatedRow]) -> list[EventRow]:
    return [it.row for it in items]
