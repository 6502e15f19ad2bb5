"""A three-site swarm on synthetic data: the smallest complete Swarm Learning script.

Run it through the launcher, which starts the services and sets the
environment each site's script reads:

    swarm-launch --sites 3 examples/synthetic/train.py -- --epochs 3

Each site draws its own data (a shared linear rule with site-specific
noise and class balance), trains a small dense network with SwarmCallback
and writes its final weights and test accuracy to SWARM_OUTPUT_DIR.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from swarm_keras import SwarmCallback
from swarm_wire.serialization import to_bytes


def site_data(stream: int, n: int, features: int, seed: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Samples from a shared rule; ``shift`` moves the class balance, ``stream`` picks the draw."""
    rule = np.random.default_rng(seed).standard_normal(features)
    rng = np.random.default_rng(seed + 1 + stream)
    x = rng.standard_normal((n, features)).astype("float32")
    logits = x @ rule + 0.5 * rng.standard_normal(n) + shift
    return x, (logits > 0).astype("float32")


class ScaleBeforeSync(keras.callbacks.Callback):
    """A hostile site: multiplies its weights just before SwarmCallback sends them."""

    def __init__(self, every: int, scale: float) -> None:
        super().__init__()
        self.every, self.scale, self.steps = every, scale, 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.steps += 1
        if self.steps % self.every == 0:
            self.model.set_weights([w * self.scale for w in self.model.get_weights()])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", default="3", help="epochs, or one number per site: 2,4,4")
    p.add_argument("--samples", type=int, default=640, help="training samples per site")
    p.add_argument("--features", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--sync-frequency", type=int, default=10)
    p.add_argument("--min-peers", type=int, default=3)
    p.add_argument("--merge-method", default="mean")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--site-shift", type=float, default=2.0, help="how far apart the sites' class balances are")
    p.add_argument("--checkin", default="snapshot", choices=["inactive", "snapshot", "active", "leave"])
    p.add_argument("--max-rounds", type=int, default=0)
    p.add_argument("--quorum-wait", type=float, default=30.0, help="seconds a round waits for a missing site")
    p.add_argument("--leader-timeout", type=float, default=20.0, help="seconds a leader has to merge")
    p.add_argument("--adaptive-sync", action="store_true", help="adapt the sync interval to a validation loss")
    p.add_argument("--secure-aggregation", action="store_true", help="merge by secure aggregation (mean only)")
    p.add_argument(
        "--attacker",
        type=int,
        default=-1,
        metavar="INDEX",
        help="for robustness tests: the site with this index scales its weights by --attack-scale before each sync",
    )
    p.add_argument("--attack-scale", type=float, default=100.0)
    p.add_argument("--dp-clip-norm", type=float, help="differential privacy: dpClipNorm (off without it)")
    p.add_argument("--dp-noise-multiplier", type=float, help="differential privacy: dpNoiseMultiplier")
    p.add_argument("--dp-target-epsilon", type=float, help="differential privacy: dpTargetEpsilon")
    p.add_argument("--dp-max-epsilon", help="differential privacy: dpMaxEpsilon, or one per site: 8,8,1")
    args = p.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    index = int(os.environ.get("SWARM_SITE_INDEX", "0"))
    epochs_per_site = [int(e) for e in args.epochs.split(",")]
    epochs = epochs_per_site[min(index, len(epochs_per_site) - 1)]
    out = Path(os.environ.get("SWARM_OUTPUT_DIR", "."))
    keras.utils.set_random_seed(args.seed + index)  # different initial weights at every site

    caps = [float(e) for e in args.dp_max_epsilon.split(",")] if args.dp_max_epsilon else [None]
    max_epsilon = caps[min(index, len(caps) - 1)]
    x, y = site_data(index, args.samples, args.features, args.seed, shift=(index - 1) * args.site_shift)
    x_test, y_test = site_data(1000, 2000, args.features, args.seed, shift=0.0)
    model = keras.Sequential(
        [
            keras.Input((args.features,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", metrics=["accuracy"])
    x_val, y_val = site_data(500 + index, 256, args.features, args.seed, shift=(index - 1) * args.site_shift)
    swarm = SwarmCallback(
        syncFrequency=args.sync_frequency,
        minPeers=args.min_peers,
        mergeMethod=args.merge_method,
        checkinModelOnTrainEnd=args.checkin,
        useAdaptiveSync=args.adaptive_sync,
        adsValData=(x_val, y_val) if args.adaptive_sync else None,
        maxRounds=args.max_rounds,
        quorumWaitSeconds=args.quorum_wait,
        leaderTimeoutSeconds=args.leader_timeout,
        dpClipNorm=args.dp_clip_norm,
        dpNoiseMultiplier=args.dp_noise_multiplier,
        dpTargetEpsilon=args.dp_target_epsilon,
        dpMaxEpsilon=max_epsilon,
        secureAggregation=args.secure_aggregation,
    )
    swarm.logger.setLevel(logging.INFO)
    callbacks = [swarm]
    if index == args.attacker:
        callbacks.insert(0, ScaleBeforeSync(args.sync_frequency, args.attack_scale))
        print(f"this site attacks: weights x{args.attack_scale:g} before every sync")
    history = model.fit(x, y, epochs=epochs, batch_size=args.batch_size, callbacks=callbacks, verbose=0)

    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    (out / "final.safetensors").write_bytes(to_bytes(model.get_weights()))
    result = {
        "test_accuracy": float(acc),
        "test_loss": float(loss),
        "rounds": swarm.rounds_synced,
        "epochs_run": len(history.history.get("loss", [])),
        "sync_interval": swarm.sync_interval,
        "median_sync_s": float(np.median(swarm.sync_seconds)) if swarm.sync_seconds else None,
        "backend": keras.backend.backend(),
    }
    if swarm.privacy is not None:
        result.update(
            dp_epsilon=swarm.privacy.epsilon,
            dp_noisy_syncs=swarm.privacy.releases,
            dp_noise_multiplier=swarm.privacy.noise_multiplier,
            dp_budget_spent=swarm.privacy_budget_spent,
        )
    (out / "result.json").write_text(json.dumps(result))
    print(f"final test accuracy {acc:.3f} after {swarm.rounds_synced} syncs")


if __name__ == "__main__":
    main()
