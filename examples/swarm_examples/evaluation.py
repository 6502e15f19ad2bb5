"""The paper's three-way comparison: each node alone, the swarm, central training.

For one data set and one node scenario (`swarm_examples.scenarios`),
`evaluate_scenario` repeats over permutations (each a new seed for the
split, the initial weights, dropout and shuffling):

1. **nodes alone**: every node trains the paper's classifier
   (`swarm_examples.paper_model`) on its own training split;
2. **central**: one model trains on the pooled training splits;
3. **swarm**: each node's training split is written to
   ``<out>/work/perm-NN/data/node<k>.npz`` and the nodes train together as
   real processes: `sn_service.cli.launcher.SwarmLauncher` starts one
   swarm-network service and one `swarm_examples.site_worker` per node,
   sharing an embedded ledger (or a Fabric network).

Every arm trains for the same epochs with the same batch size, learning
rate and width, and is scored on the same pooled test set (every node's
test split) with `swarm_examples.metrics`.

Scaling (``TrainingSettings.scaling``) follows one rule for every arm:
*a model sees data scaled with statistics of the data it was trained on*;
nothing is pooled to fit a scaler (a swarm cannot pool data).

- ``"controls"`` (default): per-gene z-scores against the training
  *controls* (`swarm_examples.scaling.ControlReferenceScaler`). A node
  alone fits it on its own training split, central on the pooled training
  splits, each swarm site on its own split. It does not depend on a node's
  share of cases, so the swarm's sites feed the shared model comparable
  inputs.
- ``"per-node"``: a plain per-gene standard scaler fitted the same way. A
  node with 70 % cases centres every disease gene on a case-heavy mean, a
  node with 1 % cases on a control mean: the same sample gets different
  inputs at different sites, which confuses a model they share.
- ``"per-sample"``: every profile is z-scored across its own genes; no
  statistic of any data set is used, so every arm sees the same inputs.
  The genes' own offsets remain, which slows the paper's network down.

With a per-node scaler (the first two), the swarm's final model is scored
on the pooled test set once with each site's scaler, i.e. as each site
would use it, and the swarm's score is the mean over sites (each site's
score is in ``swarm_sites.csv``).

The swarm's final model is the last merged model: the one the last site to
finish holds (sites that finish earlier keep contributing their final
model, ``checkinModelOnTrainEnd="snapshot"``).

Results go to the output folder: ``scores.csv`` (one row per permutation
and arm), ``summary.csv`` and ``summary.md`` (mean ± SD over
permutations), ``figure.png`` (`swarm_examples.figures`), ``run.json``
(settings, data, split, machine, times) and the swarm's logs under
``work/``.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import math
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from swarm_examples.expression_data import ExpressionData
from swarm_examples.metrics import METRICS, score_predictions
from swarm_examples.scaling import ControlReferenceScaler, StandardScaler, zscore_per_sample
from swarm_examples.scenarios import SCENARIOS, ScenarioSplit, describe_split, format_split_table, split_scenario
from swarm_wire.options import MERGE_METHODS, MERGE_WEIGHTINGS

SCALINGS = ("controls", "per-node", "per-sample")
LEDGERS = ("embedded", "fabric")
MAX_PERMUTATIONS = 100
SITE_WORKER = Path(__file__).resolve().parent / "site_worker.py"
_TASK_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class EvaluationError(RuntimeError):
    """An arm could not be trained or scored; the message says where to look."""


@dataclass(frozen=True)
class TrainingSettings:
    """How every arm trains: the same for nodes alone, central and the swarm.

    Args:
        epochs: passes over each arm's own training data.
        batch_size: samples per batch (the paper's: 512).
        learning_rate: Adam's learning rate.
        width: multiplies every layer's units (1.0: the paper's network).
        sync_frequency: swarm only: batches between merges, the same at every
            site (HPE's ``syncFrequency``). Leave None to use
            ``merges_per_epoch``.
        merges_per_epoch: swarm only: every site merges this many times per
            pass over its own data, so it sets its ``syncFrequency`` to its
            batches per epoch / ``merges_per_epoch``. Sites then finish
            their epochs together, and a bigger site's update between
            merges grows with its data. None to use ``sync_frequency``.
        merge_method: swarm only: how the swarm merges (see SwarmCallback).
        merge_weighting: swarm only: SwarmCallback's ``mergeWeighting``.
            Default (None): ``"node"`` with ``merges_per_epoch`` (every
            site's update already grows with its data; weighting by steps
            too would count big sites' data twice), ``"steps"`` with
            ``sync_frequency``.
        scaling: ``"controls"``, ``"per-node"`` or ``"per-sample"`` (module
            docstring).
    """

    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3
    width: float = 1.0
    sync_frequency: int | None = None
    merges_per_epoch: int | None = 2
    merge_method: str = "mean"
    merge_weighting: str | None = None
    scaling: str = "controls"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "sync_frequency", "merges_per_epoch"):
            value = getattr(self, name)
            if value is None and name in ("sync_frequency", "merges_per_epoch"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: pass an integer >= 1")
        if (self.sync_frequency is None) == (self.merges_per_epoch is None):
            raise ValueError(
                f"sync_frequency={self.sync_frequency!r}, merges_per_epoch={self.merges_per_epoch!r}: "
                "set exactly one (batches between merges, or merges per epoch at every site)"
            )
        for name in ("learning_rate", "width"):
            value = getattr(self, name)
            is_number = isinstance(value, int | float) and not isinstance(value, bool)
            if not is_number or not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r}: pass a number > 0")
        if self.merge_method not in MERGE_METHODS:
            raise ValueError(f"merge_method={self.merge_method!r}: pass one of {', '.join(MERGE_METHODS)}")
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling={self.scaling!r}: pass one of {', '.join(SCALINGS)}")
        if self.merge_weighting not in (None, *MERGE_WEIGHTINGS):
            raise ValueError(f"merge_weighting={self.merge_weighting!r}: pass one of {', '.join(MERGE_WEIGHTINGS)}")

    @property
    def weighting(self) -> str:
        """The swarm's merge weighting, the default resolved."""
        if self.merge_weighting is not None:
            return self.merge_weighting
        return "steps" if self.sync_frequency is not None else "node"

    def describe_sync(self) -> str:
        """How often the swarm merges, and how it weighs sites, in words."""
        weighs = "weights: steps x node" if self.weighting == "steps" else "weights: one per site"
        if self.sync_frequency is not None:
            return f"every {self.sync_frequency} batches ({weighs})"
        return f"{self.merges_per_epoch} times per epoch at every site ({weighs})"

    def worker_args(self, data_dir: Path, seed: int) -> list[str]:
        """The command line of `swarm_examples.site_worker` for these settings."""
        return [
            "--data-dir",
            str(data_dir),
            "--epochs",
            str(self.epochs),
            "--batch-size",
            str(self.batch_size),
            "--learning-rate",
            repr(self.learning_rate),
            "--width",
            repr(self.width),
            *(
                ["--sync-frequency", str(self.sync_frequency)]
                if self.sync_frequency is not None
                else ["--merges-per-epoch", str(self.merges_per_epoch)]
            ),
            "--merge-method",
            self.merge_method,
            "--merge-weighting",
            self.weighting,
            "--scaling",
            self.scaling,
            "--seed",
            str(seed),
        ]


@dataclass
class EvaluationResult:
    """What `evaluate_scenario` measured and where it wrote it.

    Args:
        arms: the arms, in table order (``node1`` ..., ``swarm``, ``central``).
        scores: one row per permutation and arm: ``permutation``, ``seed``,
            ``arm``, each metric, ``n_train``, ``train_seconds``.
        swarm_sites: the swarm's scores with each site's scaler (one row per
            permutation and site), or its one score (per-sample scaling).
        summary: one row per arm and metric: ``mean``, ``sd``, ``n``.
        files: the files written, by kind.
    """

    arms: list[str]
    scores: list[dict[str, Any]]
    swarm_sites: list[dict[str, Any]]
    summary: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    def markdown(self) -> str:
        """The summary as a markdown table (arms as rows, metrics as columns)."""
        return format_summary_markdown(self.summary, self.arms)


def _progress_printer(stream: IO[str]) -> Callable[[str], None]:
    start = time.monotonic()

    def say(message: str) -> None:
        elapsed = time.monotonic() - start
        stream.write(f"[{int(elapsed // 60):02d}:{elapsed % 60:04.1f}] {message}\n")
        stream.flush()

    return say


class _SwarmEcho:
    """Forwards the swarm's progress lines (epochs, results, failures), not every log line."""

    _KEEP = ("epoch ", "final model", "training samples", "Traceback", "Error", "FAILED")

    def __init__(self, say: Callable[[str], None], verbose: bool) -> None:
        self.say = say
        self.verbose = verbose
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            is_service = " sn] " in line
            if self.verbose or (not is_service and any(key in line for key in self._KEEP)):
                self.say("  swarm " + line)
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered beyond an unfinished line."""


def scaler_for(scaling: str, x_train: np.ndarray, y_train: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The transform a model trained on ``x_train`` is fed with (see the module docstring)."""
    if scaling == "controls":
        return ControlReferenceScaler().fit(x_train, y_train).transform
    if scaling == "per-node":
        return StandardScaler().fit(x_train).transform
    if scaling == "per-sample":
        return zscore_per_sample
    raise ValueError(f"scaling={scaling!r}: pass one of {', '.join(SCALINGS)}")


def train_local(
    X: np.ndarray, y: np.ndarray, settings: TrainingSettings, seed: int
) -> tuple[Any, Callable[[np.ndarray], np.ndarray]]:
    """Train the paper's model on one place's data; returns (model, its input transform)."""
    from swarm_examples.paper_model import build_paper_model

    transform = scaler_for(settings.scaling, X, y)
    model = build_paper_model(X.shape[1], width=settings.width, learning_rate=settings.learning_rate, seed=seed)
    model.fit(transform(X), y.astype(np.float32), epochs=settings.epochs, batch_size=settings.batch_size, verbose=0)
    return model, transform


def predict(model: Any, X: np.ndarray) -> np.ndarray:
    """Case probabilities of a model for already scaled inputs."""
    return np.asarray(model.predict(X, batch_size=2048, verbose=0), dtype=np.float64).reshape(-1)


def run_swarm(
    node_data: Sequence[tuple[np.ndarray, np.ndarray]],
    settings: TrainingSettings,
    workdir: Path,
    seed: int,
    task: str,
    ledger: str = "embedded",
    fabric_profile: Path | None = None,
    timeout_s: float = 3600.0,
    say: Callable[[str], None] = print,
    verbose: bool = False,
    keep_blobs: bool = False,
    extra_worker_args: Sequence[str] = (),
) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """Train the swarm as real processes; return the task's last merged weights and each site's outcome.

    Each site's outcome has its ``result.json`` fields, its ``scaler``
    (``(mean, scale)`` or None) and ``ends_with_swarm_model`` (whether its
    final weights are that last merged model). The services' blob
    stores (every round's models) are deleted afterwards unless
    ``keep_blobs``; logs, the ledger and each site's final weights stay.
    ``extra_worker_args`` go to every site's worker after the settings'
    (e.g. the differential-privacy options ``--dp-clip-norm 1 --dp-target-epsilon 8``).

    Raises:
        EvaluationError: a process failed or timed out (the message names
            the logs).
    """
    from sn_service.blob_store import BlobStore
    from sn_service.cli.launcher import SwarmLauncher
    from swarm_wire.serialization import from_bytes

    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for k, (x, y) in enumerate(node_data, start=1):
        np.savez(data_dir / f"node{k}.npz", X=x.astype(np.float32), y=y.astype(np.int64))
    # Site names follow the launcher's (site-a, ...), which a Fabric profile names too.
    sites = [f"site-{chr(ord('a') + i)}" for i in range(len(node_data))]
    launcher = SwarmLauncher(
        sites,
        workdir,
        ledger=ledger,
        fabric_profile=fabric_profile,
        echo=_SwarmEcho(say, verbose),  # type: ignore[arg-type]
    )
    try:
        launcher.start_services()
        launcher.start_training(str(SITE_WORKER), [*settings.worker_args(data_dir, seed), *extra_worker_args], task)
        code = launcher.wait(timeout_s)
    except RuntimeError as exc:
        raise EvaluationError(f"the swarm could not start: {exc}; logs under {workdir}") from exc
    finally:
        launcher.stop()
        shutil.rmtree(data_dir, ignore_errors=True)  # copies of the data: not kept
    if code != 0:
        raise EvaluationError(f"the swarm failed (exit {code}); see {workdir}/<site>/train.log and sn.log")
    summary = launcher.summary(task)
    if summary:
        say("  " + summary)
    # The swarm's model is the task's last merged model, as the ledger says. Every site should end
    # with it (SwarmCallback's "active" check-in waits for it); scored from a site's store if not.
    final_sha = launcher.latest_merged(task)
    if final_sha is None:
        raise EvaluationError(f"the swarm merged nothing; see {workdir}/<site>/train.log and sn.log")
    final_weights = None
    for site in sites:
        store = BlobStore(workdir / site / "blobs")
        if store.has(final_sha):
            final_weights = from_bytes(store.get(final_sha))
            break
    if final_weights is None:
        raise EvaluationError(f"no site holds the swarm's final model {final_sha[:12]}...; see {workdir}")
    if not keep_blobs:
        # Each service keeps every round's contributions and merges (here
        # 60 rounds x 4 blobs x 7 MB per site): gigabytes per permutation.
        # The ledger keeps their hashes; the final weights are kept below.
        for site in sites:
            shutil.rmtree(workdir / site / "blobs", ignore_errors=True)
    outcomes = []
    for k, site in enumerate(sites, start=1):
        site_dir = workdir / site
        try:
            result = json.loads((site_dir / "result.json").read_text())
            final_bytes = (site_dir / "final.safetensors").read_bytes()
        except (OSError, ValueError) as exc:
            raise EvaluationError(f"node{k} ({site}) left no usable result in {site_dir}: {exc}") from exc
        scaler = None
        if settings.scaling != "per-sample":
            with np.load(site_dir / "scaler.npz") as npz:
                scaler = (npz["mean"], npz["scale"])
        holds_final = hashlib.sha256(final_bytes).hexdigest() == final_sha
        outcomes.append({**result, "node": f"node{k}", "scaler": scaler, "ends_with_swarm_model": holds_final})
    stale = [o["node"] for o in outcomes if not o["ends_with_swarm_model"]]
    if stale:
        say(f"  note: {', '.join(stale)} ended with another model than the swarm's last merge {final_sha[:12]}...")
    return final_weights, outcomes


def _scaled_with(scaler: tuple[np.ndarray, np.ndarray] | None, X: np.ndarray) -> np.ndarray:
    """Apply a site's saved per-gene scaler, or per-sample z-scores when it has none."""
    if scaler is None:
        return zscore_per_sample(X)
    mean, scale = scaler
    return ((X - mean) / scale).astype(np.float32)


def score_swarm(
    weights: list[np.ndarray],
    outcomes: Sequence[dict[str, Any]],
    x_test: np.ndarray,
    y_test: np.ndarray,
    settings: TrainingSettings,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Score the swarm's final model as each site would use it, with that site's scaler.

    Returns the mean of the sites' scores and one row per site (``scaler_of``,
    the scores, ``rounds``, ``median_sync_s``). With per-sample scaling there
    is one input representation, so one row.
    """
    from swarm_examples.paper_model import build_paper_model

    model = build_paper_model(x_test.shape[1], width=settings.width, compile_model=False)
    model.set_weights(weights)
    rows = []
    for outcome in outcomes:
        scores = score_predictions(y_test, predict(model, _scaled_with(outcome["scaler"], x_test)))
        rows.append(
            {
                "scaler_of": outcome["node"] if outcome["scaler"] is not None else "per-sample",
                **scores,
                "rounds": outcome["rounds"],
                "median_sync_s": outcome["median_sync_s"],
                "ends_with_swarm_model": outcome.get("ends_with_swarm_model", True),
            }
        )
        if settings.scaling == "per-sample":
            break
    return {m: float(np.mean([row[m] for row in rows])) for m in METRICS}, rows


def summarise(scores: Sequence[dict[str, Any]], arms: Sequence[str]) -> list[dict[str, Any]]:
    """Mean and SD (n - 1) over permutations of every arm and metric; NaN scores are left out."""
    rows = []
    for arm in arms:
        for metric in METRICS:
            values = np.array([row[metric] for row in scores if row["arm"] == arm], dtype=np.float64)
            values = values[np.isfinite(values)]
            rows.append(
                {
                    "arm": arm,
                    "metric": metric,
                    "mean": float(values.mean()) if values.size else float("nan"),
                    "sd": float(values.std(ddof=1)) if values.size > 1 else float("nan"),
                    "n": int(values.size),
                }
            )
    return rows


def format_summary_markdown(summary: Sequence[dict[str, Any]], arms: Sequence[str]) -> str:
    """A markdown table: one row per arm, ``mean ± sd`` per metric."""
    header = "| arm | " + " | ".join(METRICS) + " |"
    lines = [header, "|---|" + "---|" * len(METRICS)]
    cells = {(row["arm"], row["metric"]): row for row in summary}
    for arm in arms:
        texts = []
        for metric in METRICS:
            row = cells.get((arm, metric))
            if row is None or row["n"] == 0:
                texts.append("n/a")
            elif row["n"] == 1 or not math.isfinite(row["sd"]):
                texts.append(f"{row['mean']:.3f}")
            else:
                texts.append(f"{row['mean']:.3f} ± {row['sd']:.3f}")
        lines.append(f"| {arm} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def _write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return path


def _machine() -> dict[str, Any]:
    """What ran the evaluation, for the record."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    try:
        import keras
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["keras"] = keras.__version__
    except ImportError:  # pragma: no cover - the examples need both
        pass
    info["numpy"] = np.__version__
    return info


def evaluate_scenario(
    data: ExpressionData,
    scenario: str,
    out_dir: Path,
    permutations: int = 1,
    settings: TrainingSettings | None = None,
    seed: int = 0,
    split_options: dict[str, Any] | None = None,
    ledger: str = "embedded",
    fabric_profile: Path | None = None,
    swarm_timeout_s: float = 3600.0,
    title: str | None = None,
    stream: IO[str] = sys.stdout,
    verbose_swarm: bool = False,
) -> EvaluationResult:
    """Compare nodes alone, the swarm and central training on one scenario.

    Args:
        data: binary labelled data (``y`` 0 = control, 1 = case); ``groups``
            is passed to the splitter (studies, data sets or subjects).
        scenario: one of `swarm_examples.scenarios.SCENARIOS`.
        out_dir: where results and the swarm's logs go.
        permutations: repetitions, 1 to 100; permutation ``p`` uses seed
            ``seed + p`` for the split, the initial weights and dropout.
        settings: training settings shared by every arm.
        seed: the first permutation's seed.
        split_options: more arguments for `split_scenario`, e.g.
            ``{"hold_out_whole_groups": True}``.
        ledger: ``"embedded"`` or ``"fabric"`` (then ``fabric_profile``).
        fabric_profile: the Fabric connection profile.
        swarm_timeout_s: the swarm of one permutation fails after this long.
        title: the figure's title (default: scenario and data source).
        stream: where progress lines go.
        verbose_swarm: echo every line of the swarm's processes.

    Returns:
        An `EvaluationResult`; its files are written already.

    Raises:
        ValueError: bad arguments (unknown scenario, permutations out of
            range, labels that are not binary, ...).
        EvaluationError: the swarm failed.
    """
    settings = settings or TrainingSettings()
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: pass one of {', '.join(SCENARIOS)}")
    if isinstance(permutations, bool) or not isinstance(permutations, int) or not 1 <= permutations <= MAX_PERMUTATIONS:
        raise ValueError(f"permutations={permutations!r}: pass an integer from 1 to {MAX_PERMUTATIONS}")
    if ledger not in LEDGERS:
        raise ValueError(f"ledger={ledger!r}: pass one of {', '.join(LEDGERS)}")
    if ledger == "fabric" and (fabric_profile is None or not Path(fabric_profile).is_file()):
        raise ValueError(
            f"ledger='fabric' needs a connection profile; none at {fabric_profile} "
            "(start a network with scripts/start_network.sh)"
        )
    if len(data.label_names) != 2:
        raise ValueError(f"the comparison needs two classes; the data has {data.label_names}")
    say = _progress_printer(stream)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    split_options = dict(split_options or {})
    started_at = dt.datetime.now(dt.UTC)
    scores: list[dict[str, Any]] = []
    swarm_sites: list[dict[str, Any]] = []
    splits: list[ScenarioSplit] = []
    arms: list[str] = []
    stamp = started_at.strftime("%Y%m%d%H%M%S")
    simulated = data.source.startswith("SIMULATED")
    say(f"data: {data.source}")
    say(
        f"scenario {scenario}, {permutations} permutation(s), {settings.epochs} epochs, batch "
        f"{settings.batch_size}, learning rate {settings.learning_rate:g}, width {settings.width:g}, swarm merges "
        f"{settings.describe_sync()} ({settings.merge_method}), scaling {settings.scaling}, "
        f"ledger {ledger}"
    )
    for p in range(permutations):
        perm_seed = seed + p
        split = split_scenario(data.y, scenario, data.groups, seed=perm_seed, **split_options)
        splits.append(split)
        node_names = [node.name for node in split.nodes]
        arms = [*node_names, "swarm", "central"]
        test = split.pooled_test
        x_test, y_test = data.X[test], data.y[test]
        say(
            f"permutation {p + 1}/{permutations} (seed {perm_seed}): pooled test set {len(test)} samples, "
            f"{int(y_test.sum())} {data.label_names[1]}"
        )
        if p == 0:
            for line in format_split_table(describe_split(split, data.y)).splitlines():
                say("  " + line)
            for note in split.notes:
                say("  note: " + note)

        def record(
            arm: str, probabilities: np.ndarray, n_train: int, seconds: float, *, _p: int = p, _y: np.ndarray = y_test
        ) -> None:
            row = {"permutation": _p + 1, "seed": seed + _p, "arm": arm}
            row.update(score_predictions(_y, probabilities))
            row.update({"n_train": n_train, "train_seconds": round(seconds, 2)})
            scores.append(row)
            say(
                f"  {arm}: AUC {row['auc']:.3f}, accuracy {row['accuracy']:.3f}, sensitivity "
                f"{row['sensitivity']:.3f}, specificity {row['specificity']:.3f} ({seconds:.0f} s)"
            )

        for node in split.nodes:
            say(f"  {node.name} alone: training on {len(node.train)} samples ({int(data.y[node.train].sum())} cases)")
            t0 = time.monotonic()
            model, transform = train_local(data.X[node.train], data.y[node.train], settings, perm_seed)
            record(node.name, predict(model, transform(x_test)), len(node.train), time.monotonic() - t0)
        train = split.pooled_train
        say(f"  central: training on the pooled {len(train)} samples")
        t0 = time.monotonic()
        model, transform = train_local(data.X[train], data.y[train], settings, perm_seed)
        record("central", predict(model, transform(x_test)), len(train), time.monotonic() - t0)

        say(f"  swarm: {len(split.nodes)} sites as processes ({ledger} ledger); logs under {out_dir / 'work'}")
        t0 = time.monotonic()
        task = _TASK_SAFE.sub("-", f"eval-{scenario}-{stamp}-p{p + 1}")[:64]
        weights, outcomes = run_swarm(
            [(data.X[node.train], data.y[node.train]) for node in split.nodes],
            settings,
            out_dir / "work" / f"perm-{p + 1:02d}",
            perm_seed,
            task,
            ledger=ledger,
            fabric_profile=fabric_profile,
            timeout_s=swarm_timeout_s,
            say=say,
            verbose=verbose_swarm,
        )
        swarm_seconds = time.monotonic() - t0
        mean_scores, per_site = score_swarm(weights, outcomes, x_test, y_test, settings)
        swarm_sites += [{"permutation": p + 1, "seed": perm_seed, **site} for site in per_site]
        row = {
            "permutation": p + 1,
            "seed": perm_seed,
            "arm": "swarm",
            **mean_scores,
            "n_train": len(train),
            "train_seconds": round(swarm_seconds, 2),
        }
        scores.append(row)
        say(
            f"  swarm: AUC {row['auc']:.3f}, accuracy {row['accuracy']:.3f}, sensitivity {row['sensitivity']:.3f}, "
            f"specificity {row['specificity']:.3f} ({swarm_seconds:.0f} s, "
            f"{max(o['rounds'] for o in outcomes)} merges)"
        )

    result = EvaluationResult(arms=arms, scores=scores, swarm_sites=swarm_sites)
    result.summary = summarise(scores, arms)
    columns = ["permutation", "seed", "arm", *METRICS, "n_train", "train_seconds"]
    result.files["scores"] = _write_csv(out_dir / "scores.csv", scores, columns)
    result.files["swarm_sites"] = _write_csv(
        out_dir / "swarm_sites.csv",
        swarm_sites,
        ["permutation", "seed", "scaler_of", *METRICS, "rounds", "median_sync_s", "ends_with_swarm_model"],
    )
    result.files["summary"] = _write_csv(out_dir / "summary.csv", result.summary, ["arm", "metric", "mean", "sd", "n"])
    heading = title or f"scenario {scenario}: {'SIMULATED ' if simulated else ''}{data.source.split(':')[0][:80]}"
    markdown = (
        f"{heading}\n\nMean ± SD over {permutations} permutation(s); every arm scored on the pooled test set.\n\n"
        + result.markdown()
        + "\n"
    )
    result.files["markdown"] = out_dir / "summary.md"
    result.files["markdown"].write_text(markdown, encoding="utf-8")
    from swarm_examples.figures import plot_scores

    result.files["figure"] = plot_scores(
        scores, arms, out_dir / "figure.png", f"{heading} ({permutations} permutation(s))"
    )
    run_info = {
        "started_utc": started_at.isoformat(timespec="seconds"),
        "finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "data_source": data.source,
        "simulated": simulated,
        "n_samples": data.n_samples,
        "n_genes": data.n_genes,
        "label_names": list(data.label_names),
        "scenario": scenario,
        "split_options": split_options,
        "permutations": permutations,
        "first_seed": seed,
        "settings": asdict(settings),
        "ledger": ledger,
        "split_of_first_permutation": describe_split(splits[0], data.y),
        "notes_of_first_permutation": list(splits[0].notes),
        "machine": _machine(),
    }
    result.files["run"] = out_dir / "run.json"
    result.files["run"].write_text(json.dumps(run_info, indent=1, default=str), encoding="utf-8")
    say(f"wrote {', '.join(str(path) for path in result.files.values())}")
    return result
