"""`radwatch demo`: the whole system on embedded services with a synthetic hospital
(monitor/pilot/demo.py)."""

from __future__ import annotations

import argparse

from collectors.simulator.scenarios import SCENARIOS  # light: no torch at parser build
from monitor.commands.arguments import out_dir, positive_int
from monitor.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="run everything end to end on a synthetic hospital",
        description="Example: radwatch demo --events 2000 --scenario new_vendor --out demo-out. "
        "The default scenario, a PACS inverting one scanner's images halfway through, shows "
        "a drift alert and a performance alert after the onset and none before it.",
    )
    parser.add_argument("--events", type=positive_int, default=2000)
    parser.add_argument("--scenario", default="inversion_bug", choices=sorted(SCENARIOS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=out_dir, default="demo-out",
                        help="folder for the outputs, created if missing")  # fmt: skip
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.pilot.demo import run_demo

    return run_demo(settings, events=args.events, scenario=args.scenario, seed=args.seed,
                    out=args.out)  # fmt: skip
