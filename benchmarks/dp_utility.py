"""What differential privacy costs the leukaemia swarm: scenario 2B at several epsilons vs no DP.

Every arm is the same three-site swarm of real processes (the example's
``run_swarm``: one swarm-network service and one ``site_worker`` per node,
an embedded ledger), with the same data, split, seeds and training settings;
only the sites' differential-privacy options differ. Each arm's final
model is scored on the pooled test set as the example scores its swarm.

    python benchmarks/dp_utility.py                          # epsilon 1, 4, 8 and no DP, 1 seed
    python benchmarks/dp_utility.py --seeds 3 --out .runs/dp  # medians over 3 seeds

Writes ``scores.csv`` (one row per seed and arm) and ``summary.md``
(median accuracy and AUC per arm) to ``--out``. Takes about 3 minutes per
swarm on two cores at the example's defaults.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))

from swarm_examples.evaluation import EvaluationError, TrainingSettings, run_swarm, score_swarm  # noqa: E402

NO_DP = "no DP"


def _epsilons(text: str) -> list[float]:
    values = [float(v) for v in text.split(",") if v.strip()]
    if not values or any(not np.isfinite(v) or v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text}: pass epsilons > 0 separated by commas, e.g. 1,4,8")
    return values


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epsilons", type=_epsilons, default=[1.0, 4.0, 8.0], help="target epsilons (default 1,4,8)")
    p.add_argument("--clip-norm", type=float, default=1.0, help="dpClipNorm of every site (default 1.0)")
    p.add_argument("--delta", type=float, default=1e-5, help="dpDelta of every site (default 1e-5)")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 for the split, weights and dropout (default 1)")
    p.add_argument("--epochs", type=int, default=20, help="default 20, the example's")
    p.add_argument("--batch-size", type=int, default=128, help="default 128, the example's")
    p.add_argument("--merges-per-epoch", type=int, default=6, help="default 6, the example's")
    p.add_argument("--width", type=float, default=1.0, help="layer width multiplier (default 1: the paper's)")
    p.add_argument("--no-baseline", action="store_true", help="leave out the arm without DP (run it once elsewhere)")
    p.add_argument("--out", type=Path, default=REPO / ".runs" / "dp-utility")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run every arm for every seed; print and write the table."""
    args = build_parser().parse_args(argv)
    from swarm_examples.cohort_simulator import simulate_a2
    from swarm_examples.scenarios import split_scenario

    settings = TrainingSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        merges_per_epoch=args.merges_per_epoch,
        width=args.width,
    )
    data = simulate_a2(seed=0)
    args.out.mkdir(parents=True, exist_ok=True)
    arms: list[tuple[str, list[str]]] = [] if args.no_baseline else [(NO_DP, [])]
    for eps in args.epsilons:
        arms.append(
            (
                f"epsilon {eps:g}",
                [
                    "--dp-clip-norm",
                    repr(args.clip_norm),
                    "--dp-target-epsilon",
                    repr(eps),
                    "--dp-delta",
                    repr(args.delta),
                ],
            )
        )
    started = dt.datetime.now(dt.UTC)
    rows = []
    for seed in range(args.seeds):
        split = split_scenario(data.y, "2B", data.groups, seed=seed)
        test = split.pooled_test
        x_test, y_test = data.X[test], data.y[test]
        node_data = [(data.X[node.train], data.y[node.train]) for node in split.nodes]
        for arm, extra in arms:
            t0 = time.monotonic()
            slug = arm.replace(" ", "-")
            try:
                weights, outcomes = run_swarm(
                    node_data,
                    settings,
                    args.out / "work" / f"seed-{seed}" / slug,
                    seed,
                    f"dp-{slug}-s{seed}-{started.strftime('%H%M%S')}"[:64],
                    extra_worker_args=extra,
                )
            except EvaluationError as exc:
                # Too much noise for the model: a site's training diverged to non-finite weights (the
                # service refuses them) and the swarm failed. Recorded as such, not scored.
                row = {"seed": seed, "arm": arm, "diverged": True, "seconds": round(time.monotonic() - t0, 1)}
                row.update(dict.fromkeys(("accuracy", "auc", "sensitivity", "specificity"), float("nan")))
                print(f"{arm}, seed {seed}: the swarm failed ({exc})", flush=True)
                rows.append(row)
                continue
            scores, _ = score_swarm(weights, outcomes, x_test, y_test, settings)
            row = {
                "seed": seed,
                "arm": arm,
                "diverged": False,
                "accuracy": scores["accuracy"],
                "auc": scores["auc"],
                "sensitivity": scores["sensitivity"],
                "specificity": scores["specificity"],
                "max_epsilon_spent": max((o.get("dp_epsilon") or 0.0) for o in outcomes),
                "noise_multiplier": max((o.get("dp_noise_multiplier") or 0.0) for o in outcomes),
                "noisy_syncs": max((o.get("dp_noisy_syncs") or 0) for o in outcomes),
                "median_update_norm": float(np.median([o["dp_median_update_norm"] for o in outcomes]))
                if extra
                else float("nan"),
                "merges": max(o["rounds"] for o in outcomes),
                "seconds": round(time.monotonic() - t0, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(args.out / "scores.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"| arm | median accuracy | median AUC | noise multiplier z | epsilon spent (delta {args.delta:g}) | "
        "median update norm | runs (diverged) |",
        "|---|---|---|---|---|---|---|",
    ]

    def median(mine: list[dict], key: str, fmt: str) -> str:
        values = [r[key] for r in mine if not r["diverged"] and not np.isnan(r.get(key, np.nan))]
        return format(float(np.median(values)), fmt) if values else "-"

    for arm, _ in arms:
        mine = [r for r in rows if r["arm"] == arm]
        lines.append(
            f"| {arm} | {median(mine, 'accuracy', '.3f')} | {median(mine, 'auc', '.3f')} | "
            f"{median(mine, 'noise_multiplier', '.3g')} | {median(mine, 'max_epsilon_spent', '.3g')} | "
            f"{median(mine, 'median_update_norm', '.3g')} | {len(mine)} ({sum(r['diverged'] for r in mine)}) |"
        )
    table = "\n".join(lines)
    info = (
        f"scenario 2B, SIMULATED A2-like cohort, {settings.epochs} epochs of batch {settings.batch_size}, "
        f"{settings.merges_per_epoch} merges per epoch, width {settings.width:g}, clip norm {args.clip_norm:g}; "
        f"{platform.machine()} {platform.processor() or ''}, started {started.isoformat(timespec='seconds')}"
    )
    (args.out / "summary.md").write_text(info + "\n\n" + table + "\n", encoding="utf-8")
    print(info)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
