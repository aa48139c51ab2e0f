"""Train the synthetic hospital's deployed CNN ("cxr-nodule") on the reference distribution.

Writes collectors/simulator/weights/cxr_nodule.pt (a plain-torch state dict) and its model
card cxr_nodule.json (SHA-256, provenance, validation AUROC on the reference and under each
scenario). CPU only, a few minutes:  python scripts/train_deployed_model.py
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.simulator import model as deployed  # noqa: E402
from collectors.simulator.phantom import nodule_map  # noqa: E402
from collectors.simulator.scenarios import SCENARIOS  # noqa: E402
from collectors.simulator.study import plan_study, stored_pixels  # noqa: E402

TRAIN_SEED = 9001  # disjoint from the simulator's usual seeds (0–100)
VALID_SEED = 9002
SCENARIO_SEED = 9003
AFFECTED_SEED = 9004


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann–Whitney U / (n_pos · n_neg), ties counted half (Hanley & McNeil 1982)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def dataset(seed: int, n: int, scenario: str = "none") -> tuple[np.ndarray, np.ndarray]:
    inputs = np.empty((n, deployed.INPUT_SIZE, deployed.INPUT_SIZE), dtype=np.float32)
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        plan = plan_study(seed, i, scenario_name=scenario)
        inputs[i] = deployed.service_input(stored_pixels(plan), plan.scanner.bits_stored)
        labels[i] = int(plan.positive)
    return inputs, labels


def target_maps(seed: int, n: int) -> torch.Tensor:
    """Where each training nodule is, on the model's 16×16 logit grid (weak localisation)."""
    blobs = np.stack([nodule_map(plan_study(seed, i).anatomy, 64) for i in range(n)])
    return (F.max_pool2d(torch.from_numpy(blobs)[:, None], 4) > 0.3).float()


def say(*parts: object) -> None:
    print(*parts, flush=True)  # progress shows even when piped


def cached(folder: Path | None, name: str, seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    path = folder / f"{name}-{seed}-{n}.npz" if folder else None
    if path is not None and path.exists():
        data = np.load(path)
        return data["x"], data["y"]
    x, y = dataset(seed, n)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, x=x, y=y)
    return x, y


def train(args: argparse.Namespace, x_train: np.ndarray, y_train: np.ndarray,
          x_valid: np.ndarray, y_valid: np.ndarray, t0: float) -> deployed.NoduleNet:  # fmt: skip
    net = deployed.NoduleNet()
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    prevalence = float(y_train.mean())
    pos_weight = torch.tensor((1 - prevalence) / prevalence)
    # The image label trains the max-pooled score; the nodule's position trains the map
    # (positives are ~3 of 256 cells, hence the weight).
    maps = target_maps(TRAIN_SEED, args.train)
    map_weight = torch.tensor(20.0)
    generator = torch.Generator().manual_seed(args.seed)
    xt, yt = torch.from_numpy(x_train)[:, None], torch.from_numpy(y_train).float()
    for epoch in range(args.epochs):
        net.train()
        order = torch.randperm(len(xt), generator=generator)
        total = 0.0
        for start in range(0, len(xt), 32):
            idx = order[start : start + 32]
            logit_map, _ = net.maps(xt[idx])
            logits = torch.amax(logit_map, dim=(1, 2, 3))
            loss = F.binary_cross_entropy_with_logits(
                logits, yt[idx], pos_weight=pos_weight
            ) + F.binary_cross_entropy_with_logits(logit_map, maps[idx], pos_weight=map_weight)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
        model = deployed.DeployedModel(net=net.eval(), sha256="training")
        scores, _ = model.predict(x_valid)
        say(f"epoch {epoch + 1}: loss {total / len(xt):.4f}  valid AUROC "
            f"{auroc(scores, y_valid):.4f}  ({time.monotonic() - t0:.0f} s)")  # fmt: skip
    return net.eval()


def affected_evaluation(model: deployed.DeployedModel, name: str, limit: int = 120) -> dict:
    """AUROC and positive rate on the studies `name` changes, with and without it."""
    indices = [i for i in range(600) if plan_study(AFFECTED_SEED, i, scenario_name=name).affected]
    indices = indices[:limit]
    result: dict = {"n": len(indices)}
    for label, scenario in (("reference", "none"), ("scenario", name)):
        plans = [plan_study(AFFECTED_SEED, i, scenario_name=scenario) for i in indices]
        x = np.stack(
            [deployed.service_input(stored_pixels(p), p.scanner.bits_stored) for p in plans]
        )
        y = np.array([p.positive for p in plans], dtype=np.int64)
        scores, _ = model.predict(x)
        result[f"positives_{label}"] = int(y.sum())
        value = auroc(scores, y)  # NaN when one class is absent: stored as null
        result[f"auroc_{label}"] = round(value, 4) if math.isfinite(value) else None
        result[f"positive_rate_{label}"] = round(float((scores >= deployed.THRESHOLD).mean()), 4)
    say(f"  affected by {name:18s} n={result['n']:3d}  AUROC {result['auroc_reference']} → "
        f"{result['auroc_scenario']}  positive rate {result['positive_rate_reference']:.3f} → "
        f"{result['positive_rate_scenario']:.3f}")  # fmt: skip
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--valid", type=int, default=1000)
    parser.add_argument("--scenario-n", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="torch initialisation seed")
    parser.add_argument("--out", type=Path, default=deployed.WEIGHTS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--evaluate-only", action="store_true",
                        help="keep the weights, recompute the card's evaluation sections")  # fmt: skip
    parser.add_argument("--cache", type=Path, help="keep generated arrays here (npz) for reruns")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    # One thread: on a shared machine more threads mostly fight each other.
    torch.set_num_threads(args.threads)
    t0 = time.monotonic()
    if args.evaluate_only:
        x_train = y_train = np.empty(0)
    else:
        x_train, y_train = cached(args.cache, "train", TRAIN_SEED, args.train)
    x_valid, y_valid = cached(args.cache, "valid", VALID_SEED, args.valid)
    say(f"data: {args.train} train / {args.valid} valid in {time.monotonic() - t0:.0f} s")
    if args.evaluate_only:
        model = deployed.load_deployed(args.out, args.out.parent / (args.out.stem + ".json"))
        training = json.loads((args.out.parent / (args.out.stem + ".json")).read_text())["training"]
    else:
        net = train(args, x_train, y_train, x_valid, y_valid, t0)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), args.out)
        model = deployed.DeployedModel(net=net, sha256="training")
        training = {
            "seed": args.seed,
            "data_seed": TRAIN_SEED,
            "n": args.train,
            "epochs": args.epochs,
            "optimiser": "Adam lr 3e-3, batch 32, image BCE + nodule-map BCE",
            "distribution": "scenario none (reference)",
        }
    scores, _ = model.predict(x_valid)
    reference_auroc = auroc(scores, y_valid)
    by_scenario = {}
    for name in SCENARIOS:
        x, y = dataset(SCENARIO_SEED, args.scenario_n, name)
        s, _ = model.predict(x)
        by_scenario[name] = {
            "auroc": round(auroc(s, y), 4),
            "positive_rate": round(float((s >= deployed.THRESHOLD).mean()), 4),
        }
        say(f"  scenario {name:18s} AUROC {by_scenario[name]['auroc']:.4f}  "
            f"positive rate {by_scenario[name]['positive_rate']:.3f}")  # fmt: skip
    affected = {name: affected_evaluation(model, name) for name in SCENARIOS if name != "none"}
    card = {
        "name": deployed.MODEL_NAME,
        "version": deployed.MODEL_VERSION,
        "file": args.out.name,
        "sha256": deployed.sha256_file(args.out),
        "architecture": "NoduleNet: conv5/2 stem, conv blocks 16/32/32 to a 16×16 map, 1×1 "
        f"embedding {deployed.EMBEDDING_DIM} + ReLU, 1×1 logit, max over locations",
        "input": f"{deployed.INPUT_SIZE}×{deployed.INPUT_SIZE}, stored/(2^BitsStored-1)",
        "training": training,
        "validation": {
            "data_seed": VALID_SEED,
            "n": args.valid,
            "auroc": round(reference_auroc, 4),
        },
        "scenarios_severity_1": {"data_seed": SCENARIO_SEED, "n": args.scenario_n, **by_scenario},
        # The studies each scenario changed, scored as they are and as they would have been
        # without it (same seed and index): the stratum-level effect on the model.
        "affected_studies_severity_1": {"data_seed": AFFECTED_SEED, **affected},
    }
    (args.out.parent / (args.out.stem + ".json")).write_text(
        json.dumps(card, indent=2, allow_nan=False) + "\n"
    )
    say(f"{args.out} ({args.out.stat().st_size} bytes), sha256 {card['sha256']}")
    say(f"reference AUROC {reference_auroc:.4f}; total {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
