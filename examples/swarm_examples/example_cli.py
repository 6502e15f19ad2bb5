"""The command line shared by the use-case examples (``examples/*/run.py``).

Each example names its data sets, with the training settings that suit
each (`DataChoice`); this module adds the common options (scenario,
permutations, epochs, ledger, output folder...), checks them, loads the
data, runs `swarm_examples.evaluation.evaluate_scenario` and prints the
table. Nothing heavy is imported before the arguments are checked, so a
mistake is reported in a second.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarm_examples.evaluation import (
    LEDGERS,
    MAX_PERMUTATIONS,
    MERGE_METHODS,
    MERGE_WEIGHTINGS,
    SCALINGS,
    EvaluationError,
    TrainingSettings,
)
from swarm_examples.expression_data import ExpressionData
from swarm_examples.scenarios import SCENARIOS


@dataclass(frozen=True)
class DataChoice:
    """One ``--data`` value of an example.

    Args:
        load: returns the data (binary labels), given the ``--data-seed``.
        description: one line for ``--help``.
        scenario: the default scenario for this data.
        settings: the default training settings for this data.
        split_options: extra arguments for the splitter (e.g. keep
            subjects whole).
        simulated: the data are simulated (said in every output).
    """

    load: Callable[[int], ExpressionData]
    description: str
    scenario: str
    settings: TrainingSettings
    split_options: dict[str, Any] = field(default_factory=dict)
    simulated: bool = False


def _permutations(text: str) -> int:
    """argparse type: an integer from 1 to MAX_PERMUTATIONS."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; pass 1 to {MAX_PERMUTATIONS}") from None
    if not 1 <= value <= MAX_PERMUTATIONS:
        raise argparse.ArgumentTypeError(f"{value}: pass 1 to {MAX_PERMUTATIONS} permutations")
    return value


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; pass an integer >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: pass an integer >= 1")
    return value


def _positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; pass a number > 0") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{value}: pass a finite number > 0")
    return value


def build_parser(
    prog: str, description: str, choices: dict[str, DataChoice], default_data: str, default_out: Path
) -> argparse.ArgumentParser:
    """The example's options; training options default to the chosen data's settings."""
    data_help = "; ".join(f"{name}: {choice.description}" for name, choice in choices.items())
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--data", choices=list(choices), default=default_data, help=f"(default {default_data}) {data_help}")
    p.add_argument("--scenario", choices=list(SCENARIOS), help="node scenario (default: the data's, see README)")
    p.add_argument(
        "--permutations",
        type=_permutations,
        default=1,
        help=f"repetitions with new seeds, 1 to {MAX_PERMUTATIONS} (default 1)",
    )
    p.add_argument("--epochs", type=_positive_int, help="epochs for every arm (default: the data's)")
    p.add_argument("--batch-size", type=_positive_int, help="batch size for every arm (default: the data's)")
    p.add_argument("--learning-rate", type=_positive_float, help="Adam's learning rate (default: the data's)")
    p.add_argument("--width", type=_positive_float, help="layer width multiplier; 1 is the paper's network")
    sync = p.add_mutually_exclusive_group()
    sync.add_argument(
        "--sync-frequency", type=_positive_int, help="swarm: merge every N batches at every site (HPE's syncFrequency)"
    )
    sync.add_argument(
        "--merges-per-epoch",
        type=_positive_int,
        help="swarm: every site merges M times per pass over its own data (default: the data's)",
    )
    p.add_argument("--merge-method", choices=list(MERGE_METHODS), help="swarm: merge method (default mean)")
    p.add_argument(
        "--merge-weighting",
        choices=list(MERGE_WEIGHTINGS),
        help="swarm: a site's weight in the mean: steps since its last merge x node weight, or one per site "
        "(default: node with --merges-per-epoch, steps with --sync-frequency)",
    )
    p.add_argument("--scaling", choices=list(SCALINGS), help="input scaling (default controls, see README)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first permutation (default 0)")
    p.add_argument("--data-seed", type=int, default=0, help="simulated data only: the simulator's seed (default 0)")
    p.add_argument("--ledger", choices=list(LEDGERS), default="embedded", help="the swarm's ledger (default embedded)")
    p.add_argument(
        "--fabric-profile",
        type=Path,
        default=Path(".fabric/connection.json"),
        help="--ledger fabric: the network's connection profile (default .fabric/connection.json)",
    )
    p.add_argument("--out", type=Path, default=default_out, help=f"output folder (default {default_out})")
    p.add_argument(
        "--swarm-timeout",
        type=_positive_float,
        default=3600.0,
        help="seconds before one permutation's swarm is failed (default 3600)",
    )
    p.add_argument("--verbose-swarm", action="store_true", help="echo every log line of the swarm's processes")
    return p


def settings_from_args(args: argparse.Namespace, base: TrainingSettings) -> TrainingSettings:
    """The data's default settings, overridden by the options given."""
    names = ("epochs", "batch_size", "learning_rate", "width", "merge_method", "merge_weighting", "scaling")
    overrides = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.sync_frequency is not None:
        overrides.update(sync_frequency=args.sync_frequency, merges_per_epoch=None)
    elif args.merges_per_epoch is not None:
        overrides.update(sync_frequency=None, merges_per_epoch=args.merges_per_epoch)
    values = {**base.__dict__, **overrides}
    return TrainingSettings(**values)


def main(
    argv: Sequence[str] | None,
    prog: str,
    description: str,
    choices: dict[str, DataChoice],
    default_data: str,
    default_out: Path,
) -> int:
    """Parse, load, evaluate, print the table; the process's exit code."""
    parser = build_parser(prog, description, choices, default_data, default_out)
    args = parser.parse_args(argv)
    choice = choices[args.data]
    if args.ledger == "fabric" and not args.fabric_profile.is_file():
        parser.error(
            f"--ledger fabric needs a running network: no connection profile at {args.fabric_profile} "
            "(start one with scripts/start_network.sh, or pass --fabric-profile)"
        )
    try:
        settings = settings_from_args(args, choice.settings)
    except ValueError as exc:
        parser.error(str(exc))
    scenario = args.scenario or choice.scenario
    split_options = dict(choice.split_options)
    if split_options.get("hold_out_whole_groups") and scenario != "2D":
        # Whole groups (subjects) can only be held out where nodes hold whole groups.
        parser.error(
            f"--data {args.data} keeps each subject's samples together, which needs scenario 2D "
            f"(whole groups per node); got --scenario {scenario}"
        )
    started = time.monotonic()
    from swarm_examples.evaluation import evaluate_scenario
    from swarm_examples.scenarios import ScenarioError

    data = choice.load(args.data_seed)
    if choice.simulated and not data.source.startswith("SIMULATED"):
        raise AssertionError(f"{args.data} is simulated but its source does not say so: {data.source}")
    label = "SIMULATED data" if choice.simulated else "real data"

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through the launcher, which stops every process it started

    signal.signal(signal.SIGTERM, on_sigterm)
    title = f"{args.data} ({label}), scenario {scenario}: {data.label_names[1]} vs {data.label_names[0]}"
    try:
        result = evaluate_scenario(
            data,
            scenario,
            args.out,
            permutations=args.permutations,
            settings=settings,
            seed=args.seed,
            split_options=split_options,
            ledger=args.ledger,
            fabric_profile=args.fabric_profile if args.ledger == "fabric" else None,
            swarm_timeout_s=args.swarm_timeout,
            title=title,
            verbose_swarm=args.verbose_swarm,
        )
    except ScenarioError as exc:
        print(f"{prog}: scenario {scenario} does not fit --data {args.data}: {exc}", file=sys.stderr)
        return 2
    except EvaluationError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; every swarm process was stopped", file=sys.stderr)
        return 130
    elapsed = time.monotonic() - started
    print()
    print(title)
    print(f"mean ± SD over {args.permutations} permutation(s), every arm scored on the pooled test set:")
    print(result.markdown())
    print(f"\nfigure: {result.files['figure']}; tables: {result.files['markdown']}, {result.files['scores']}")
    print(f"total {elapsed:.0f} s")
    return 0
