"""One swarm site of `swarm_examples.evaluation`: train the paper's model on this site's split.

The evaluation writes each node's training split to ``<data-dir>/node<k>.npz``
(arrays ``X`` raw expression, ``y`` labels) and starts this script once per
site through `sn_service.cli.launcher.SwarmLauncher`, which sets the environment
it reads:

- ``SWARM_SITE_INDEX``: which file is this site's (0 -> ``node1.npz``);
- ``SWARM_SN_URL``, ``SWARM_TASK``: this site's service and the task (read
  by ``SwarmCallback``);
- ``SWARM_NUM_SITES``: the default of ``--min-peers``;
- ``SWARM_OUTPUT_DIR``: where the results go.

The site scales its own data (``--scaling``: ``controls`` z-scores every gene
against this site's training controls, ``per-node`` fits a per-gene
standard scaler on this site's training data, ``per-sample`` z-scores each
profile across its genes; nothing leaves the site), builds the paper's classifier, trains it with
``SwarmCallback(checkinModelOnTrainEnd="snapshot")`` (a site that has run out
of epochs keeps contributing its final model while the others train) and
writes to ``SWARM_OUTPUT_DIR``:

- ``final.safetensors``: the final weights (``swarm_keras.serialization``);
- ``scaler.npz``: this site's per-gene ``mean`` and ``scale`` (not with
  per-sample scaling);
- ``result.json``: samples, batches, rounds, times.

With ``--merges-per-epoch M`` every site merges about M times per pass over
its own data, and the task ends after M x epochs merge rounds (SwarmCallback's
``maxRounds``), so a site can stop a few batches short of its last epoch.

Run by hand (one site, no swarm) with ``SWARM_LOOPBACK=1``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

# Run as a script, this file's folder is sys.path[0]: its modules (metrics,
# scaling, ...) would shadow top-level packages of the same name.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

SCALINGS = ("controls", "per-node", "per-sample")


def build_parser() -> argparse.ArgumentParser:
    """The worker's options (the evaluation passes every one of them)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, required=True, help="folder with node1.npz, node2.npz, ...")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--learning-rate", type=float, required=True)
    p.add_argument("--width", type=float, default=1.0, help="layer width multiplier (1.0: the paper's)")
    sync = p.add_mutually_exclusive_group(required=True)
    sync.add_argument("--sync-frequency", type=int, help="batches between merges")
    sync.add_argument(
        "--merges-per-epoch",
        type=int,
        help="merge this many times per pass over this site's data (sets the sync frequency from the data size)",
    )
    p.add_argument("--merge-method", default="mean")
    p.add_argument(
        "--merge-weighting",
        choices=("steps", "node"),
        default="steps",
        help="SwarmCallback's mergeWeighting: steps since the last merge x nodeWeightage, or one weight per site",
    )
    p.add_argument("--min-peers", type=int, help="default: SWARM_NUM_SITES (every site)")
    p.add_argument("--scaling", choices=SCALINGS, default="controls")
    p.add_argument("--seed", type=int, default=0, help="seeds the initial weights, dropout and shuffling")
    dp = p.add_argument_group("differential privacy (SwarmCallback's dp* options; off without --dp-clip-norm)")
    dp.add_argument("--dp-clip-norm", type=float, help="dpClipNorm: L2 bound on the update since the last merge")
    noise = dp.add_mutually_exclusive_group()
    noise.add_argument("--dp-target-epsilon", type=float, help="dpTargetEpsilon: epsilon for the whole run")
    noise.add_argument("--dp-noise-multiplier", type=float, help="dpNoiseMultiplier: noise std / clip norm")
    dp.add_argument("--dp-delta", type=float, help="dpDelta (default 1e-5)")
    return p


def progress_callback(site: str, epochs: int, swarm: object) -> Any:
    """A Keras callback that counts batches and prints ``<site>: epoch k/E loss L (N merges)``."""
    import keras

    class ProgressLine(keras.callbacks.Callback):
        batches = 0

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.batches += 1

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            loss = (logs or {}).get("loss", float("nan"))
            rounds = getattr(swarm, "rounds_synced", 0)
            print(f"{site}: epoch {epoch + 1}/{epochs} loss {loss:.4f} ({rounds} merges so far)", flush=True)

    return ProgressLine()


def main(argv: list[str] | None = None) -> int:
    """Train this site's share and write the final weights; 0 on success."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    index = int(os.environ.get("SWARM_SITE_INDEX", "0"))
    site = os.environ.get("SWARM_SITE", f"node{index + 1}")
    n_sites = int(os.environ.get("SWARM_NUM_SITES", "1"))
    out = Path(os.environ.get("SWARM_OUTPUT_DIR", "."))
    out.mkdir(parents=True, exist_ok=True)
    data_file = args.data_dir / f"node{index + 1}.npz"
    if not data_file.is_file():
        print(f"{site}: no training data at {data_file}; the evaluation writes node<k>.npz there", file=sys.stderr)
        return 2
    with np.load(data_file) as npz:
        x, y = npz["X"].astype(np.float32), npz["y"].astype(np.float32)

    from swarm_examples.paper_model import build_paper_model
    from swarm_examples.scaling import ControlReferenceScaler, StandardScaler, zscore_per_sample
    from swarm_keras import SwarmCallback
    from swarm_wire.serialization import to_bytes

    if args.scaling == "per-sample":
        x = zscore_per_sample(x)
    else:
        scaler = ControlReferenceScaler().fit(x, y) if args.scaling == "controls" else StandardScaler().fit(x)
        x = scaler.transform(x)
        np.savez(out / "scaler.npz", mean=scaler.mean_, scale=scaler.scale_)
    batches_per_epoch = -(-len(y) // args.batch_size)
    if args.sync_frequency is not None:
        sync_frequency, max_rounds = args.sync_frequency, 0
    else:
        # Every site merges as often per epoch, so bigger sites take more
        # batches between merges: their updates grow with their data (and
        # with --merge-weighting node every site weighs the same). Rounding
        # leaves some sites a few merges more than others; the agreed round
        # budget (round 0 aligns the starting weights) ends the task for all
        # at once instead of leaving one site to train alone.
        sync_frequency = max(1, round(batches_per_epoch / args.merges_per_epoch))
        max_rounds = args.merges_per_epoch * args.epochs + 1
    # Each site draws its own initial weights and dropout masks; the first
    # merge round gives every site the round leader's starting weights.
    model = build_paper_model(x.shape[1], width=args.width, learning_rate=args.learning_rate, seed=args.seed + index)
    swarm = SwarmCallback(
        syncFrequency=sync_frequency,
        minPeers=args.min_peers or n_sites,
        mergeMethod=args.merge_method,
        mergeWeighting=args.merge_weighting,
        totalEpochs=args.epochs,
        checkinModelOnTrainEnd="snapshot",
        quorumWaitSeconds=30,
        leaderTimeoutSeconds=30,
        maxRounds=max_rounds,
        dpClipNorm=args.dp_clip_norm,
        dpTargetEpsilon=args.dp_target_epsilon,
        dpNoiseMultiplier=args.dp_noise_multiplier,
        dpDelta=args.dp_delta,
    )
    print(
        f"{site}: {len(y)} training samples ({int(y.sum())} cases), {args.epochs} epochs of batch "
        f"{args.batch_size} ({batches_per_epoch} batches each), merging every {sync_frequency} batches with at "
        f"least {swarm.minPeers} sites, merge weights by {args.merge_weighting}",
        flush=True,
    )
    progress = progress_callback(site, args.epochs, swarm)
    started = time.perf_counter()
    model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, callbacks=[swarm, progress], verbose=0)
    train_seconds = time.perf_counter() - started
    (out / "final.safetensors").write_bytes(to_bytes(model.get_weights()))
    result = {
        "site": site,
        "n_train": len(y),
        "cases_train": int(y.sum()),
        "epochs": args.epochs,
        "batches_planned": args.epochs * batches_per_epoch,
        "batches": progress.batches,
        "max_rounds": max_rounds,
        "sync_frequency": sync_frequency,
        "rounds": swarm.rounds_synced,
        "median_sync_s": float(np.median(swarm.sync_seconds)) if swarm.sync_seconds else None,
        "train_seconds": train_seconds,
        "finished_at": time.time(),
        "scaling": args.scaling,
    }
    if swarm.privacy is not None:
        norms = swarm.privacy.update_norms
        result.update(
            dp_epsilon=swarm.privacy.epsilon,
            dp_delta=swarm.privacy.settings.delta,
            dp_noise_multiplier=swarm.privacy.noise_multiplier,
            dp_clip_norm=swarm.privacy.settings.clip_norm,
            dp_noisy_syncs=swarm.privacy.releases,
            dp_median_update_norm=float(np.median(norms)) if norms else None,
            dp_budget_spent=swarm.privacy_budget_spent,
        )
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(f"{site}: final model written after {swarm.rounds_synced} merges in {train_seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
