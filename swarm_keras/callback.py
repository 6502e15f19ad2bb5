"""SwarmCallback: Swarm Learning for ``model.fit``."""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import keras
import numpy as np

from swarm_keras.privacy import PrivacySettings, SitePrivacy
from swarm_keras.service_client import ServiceClient, SwarmServiceError
from swarm_wire import serialization
from swarm_wire.names import MAX_METRICS, METRIC_NAME_RE, NAME_RE
from swarm_wire.options import MERGE_METHODS, MERGE_WEIGHTINGS

# HPE's three, and "leave" (ours): go at once, rounds stop waiting for this site.
CHECKIN_MODES = ("inactive", "snapshot", "active", "leave")
# HPE's mlPlatform values this callback can honour: it trains Keras models (on any Keras 3 backend).
ML_PLATFORMS = ("KERAS", "TF")
DEFAULT_SERVICE_URL = "http://127.0.0.1:30305"
LOOPBACK_ENV = "SWARM_LOOPBACK"
SERVICE_URL_ENV = "SWARM_SN_URL"
TASK_ENV = "SWARM_TASK"


class _UnconfiguredLoggingHandler(logging.StreamHandler):
    """Prints ``swarm_keras`` records to stderr only while the application configured no logging.

    HPE's callback prints once its logger's level is set, with no other set-up
    (``cb.logger.setLevel("INFO")``). Once the application configures logging
    (``logging.basicConfig``, a root handler), records reach it by propagation
    and this handler stays silent, so nothing prints twice.
    """

    def emit(self, record: logging.LogRecord) -> None:
        if not logging.getLogger().handlers:
            super().emit(record)


def _default_logger() -> logging.Logger:
    logger = logging.getLogger("swarm_keras")
    if not any(isinstance(h, _UnconfiguredLoggingHandler) for h in logger.handlers):
        handler = _UnconfiguredLoggingHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s swarm_keras: %(message)s"))
        logger.addHandler(handler)
    return logger


def _positive_int(name: str, value: Any, allowed: str = "an integer >= 1") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be {allowed}")
    return int(value)


def _positive_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be a number of seconds >= 0")
    return float(value)


def _all_layers(layer: Any) -> Any:
    """The layer and every layer nested in it."""
    yield layer
    for sub in getattr(layer, "layers", None) or []:
        yield from _all_layers(sub)


class SwarmCallback(keras.callbacks.Callback):
    """Trains the model together with other sites by merging weights every few batches.

    Add it to ``model.fit`` on every site. At train begin every site takes
    the same starting weights (the first round's leader's, or the swarm's
    latest merged model for a site that joins late). Every
    ``syncFrequency`` batches the callback pauses training, sends the
    weights to this site's swarm-network service, waits for the round's
    merged model and loads it. At train end the site checks in per
    ``checkinModelOnTrainEnd``. Training stops early when the swarm says
    the task is over.

    Each sync also reports this site's latest training metrics (Keras
    ``logs`` from the last batch and epoch: ``loss``, the compiled metrics,
    ``val_*``; with adaptive sync, ``ads_val_loss``, the validation loss of
    the last merged model) so every site's dashboard can chart them per
    round. Only these numbers leave the site, never data.

    The constructor mirrors HPE Swarm Learning's, so a script ports by
    changing its import.

    Args:
        syncFrequency: batches between syncs (an integer >= 1).
        minPeers: the fewest sites whose models a merge needs (>= 1).
        trainingContract: the task's name, shared by every site. Default:
            env ``SWARM_TASK``, else ``"default"``.
        useAdaptiveSync: adapt the sync interval to the validation loss on
            ``adsValData``: the interval doubles (up to 4 x syncFrequency)
            while merges stop improving the loss by 1 %, and halves back
            towards syncFrequency when a merge makes it worse.
        adsValData: validation data for adaptive sync, ``(x, y)`` or a
            dataset; required when ``useAdaptiveSync`` is True.
        adsValBatchSize: batch size for evaluating ``adsValData``.
        mergeMethod: ``"mean"`` (weighted, see ``mergeWeighting``),
            ``"coordmedian"``, ``"geomedian"``, ``"trimmedmean"``,
            ``"krum"`` or ``"multikrum"``.
        secureAggregation: merge by secure aggregation (``"mean"`` only,
            default False): each site uploads its weighted model masked
            with pairwise and self masks agreed with the round's other
            sites, so the leader, and anyone else, sees masked blobs and
            the weighted mean only (docs/secure-aggregation.md). Every site
            of a task must pass the same value.
        nodeWeightage: this site's weight in ``"mean"`` merges, 1 to 100.
        mergeWeighting: what a site's weight in a ``"mean"`` merge is:
            ``"steps"`` (default): batches trained since its last sync x
            nodeWeightage, so a site that trained more since the last merge
            counts more; ``"node"``: nodeWeightage alone, every merge (HPE's
            definition). When sites sync a fixed number of times per epoch
            (bigger sites more batches apart), use ``"node"``: their updates
            already grow with their data, and weighting them by steps as
            well would count a big site's data twice (the objective
            inconsistency of FedAvg with unequal local steps, Wang et al.
            2020, "FedNova").
        totalEpochs: the number of epochs this site trains, as in HPE: shown
            in the progress line logged after each epoch ("epoch 3 of 10"),
            and a warning at train begin if ``fit``'s ``epochs`` differs
            (``fit``'s own ``epochs`` governs training).
        checkinModelOnTrainEnd: what this site does from the end of its
            training until every site is done (HPE's meaning). In every mode
            the site stays a peer of each round, so ``minPeers`` = number of
            sites keeps working while others train on, and ``fit`` returns
            once the swarm is done, with the swarm's final merged model loaded
            (every site ends with the same weights). ``"snapshot"`` (default):
            the site's service contributes the weights the site had when it
            stopped to every later round (it does not take up merged weights
            meanwhile); ``"active"``: it contributes each round's merged
            model, as if still training but without local data;
            ``"inactive"``: it takes part with weight 0, counted towards
            ``minPeers`` but left out of every merge. ``"leave"`` (not in
            HPE): the site leaves at once and rounds stop waiting for it;
            with ``minPeers`` = number of sites the others then cannot merge.
        logger: a ``logging.Logger``; default ``logging.getLogger("swarm_keras")``,
            which prints to stderr by itself until the application configures
            logging, so ``cb.logger.setLevel("INFO")`` alone shows the progress.
            Exposed as ``.logger``.
        mlPlatform: HPE's ``"KERAS"`` (default) or ``"TF"``: both mean a
            Keras model here, on whichever Keras 3 backend is set
            (``KERAS_BACKEND``: tensorflow, jax or torch). HPE's
            ``"PYTORCH"`` platform (a plain ``torch.nn.Module`` driven by hand)
            is refused: build the model with Keras on the torch backend.
        lossFunction, lossFunctionArgs, metricFunction, metricFunctionArgs:
            accepted so HPE scripts run unchanged, and ignored, as HPE ignores
            them on Keras platforms (they name PyTorch loss and torchmetrics
            classes); the loss and metrics shown are those ``model.compile``
            set, from Keras's logs.
        serviceUrl: this site's swarm-network service. Default: env
            ``SWARM_SN_URL``, else ``http://127.0.0.1:30305``.
        quorumWaitSeconds: how long a round waits for late sites once
            ``minPeers`` have submitted (default 30).
        leaderTimeoutSeconds: how long a round's leader has to merge before
            the next site takes over (default 30).
        syncTimeoutSeconds: how long one sync may take before training
            fails with a message naming what it waited for (default 600).
        maxRounds: end the task after this many rounds, counting the first
            (which aligns the starting weights): N gives N - 1 merges (0: no limit).
        dpClipNorm: turns on differential privacy (docs/privacy.md; needs
            ``pip install 'swarm-keras[dp]'``): each sync sends the merged
            model this site last loaded plus its update since then, clipped to
            this L2 norm, plus Gaussian noise. Default None: off.
        dpNoiseMultiplier: z: the noise's standard deviation is z x dpClipNorm
            per weight. Give this or ``dpTargetEpsilon``.
        dpTargetEpsilon: the epsilon this site may spend over the run; z is
            computed from it and the syncs planned (``dpPlannedSyncs``, else
            fit's epochs x steps per epoch / syncFrequency, capped by
            ``maxRounds`` - 1), and it is the default ``dpMaxEpsilon``.
        dpDelta: the delta epsilon is reported at (default 1e-5; below
            1 / the number of samples of the site is the usual choice).
        dpMaxEpsilon: the site stops training (``model.stop_training``) rather
            than make a sync that would take its epsilon above this, and ends
            as at train end per ``checkinModelOnTrainEnd`` without sending
            anything new. Default: ``dpTargetEpsilon``, else no limit.
        dpPlannedSyncs: the number of noisy syncs ``dpTargetEpsilon`` is spread
            over, when fit cannot tell (a dataset of unknown length).
        dpShareTrainingMetrics: also report the Keras metrics (loss, accuracy,
            ...) to the swarm's dashboards. They are computed on the site's
            data and are not covered by the guarantee, so with differential
            privacy they stay at the site unless this is True (default False);
            the privacy metrics (``dp_epsilon``, ...) are always reported.

    With env ``SWARM_LOOPBACK=1`` the callback validates its arguments and
    trains alone with no service: for writing a script before a swarm exists.

    Example:

    >>> from swarm_keras import SwarmCallback
    >>> swarm = SwarmCallback(syncFrequency=64, minPeers=3, mergeMethod="mean")
    >>> swarm.logger.setLevel("INFO")
    >>> model.fit(x, y, epochs=10, callbacks=[swarm])  # doctest: +SKIP
    """

    def __init__(
        self,
        syncFrequency: int,
        minPeers: int,
        trainingContract: str | None = None,
        useAdaptiveSync: bool = False,
        adsValData: Any = None,
        adsValBatchSize: int | None = None,
        mergeMethod: str = "mean",
        nodeWeightage: int = 1,
        mergeWeighting: str = "steps",
        totalEpochs: int | None = None,
        checkinModelOnTrainEnd: str = "snapshot",
        logger: logging.Logger | None = None,
        mlPlatform: str = "KERAS",
        lossFunction: str | None = None,
        lossFunctionArgs: dict | None = None,
        metricFunction: str | None = None,
        metricFunctionArgs: dict | None = None,
        serviceUrl: str | None = None,
        quorumWaitSeconds: float = 30.0,
        leaderTimeoutSeconds: float = 30.0,
        syncTimeoutSeconds: float = 600.0,
        maxRounds: int = 0,
        dpClipNorm: float | None = None,
        dpNoiseMultiplier: float | None = None,
        dpTargetEpsilon: float | None = None,
        dpDelta: float | None = None,
        dpMaxEpsilon: float | None = None,
        dpPlannedSyncs: int | None = None,
        dpShareTrainingMetrics: bool = False,
        secureAggregation: bool = False,
    ) -> None:
        super().__init__()
        self.syncFrequency = _positive_int("syncFrequency", syncFrequency)
        self.minPeers = _positive_int("minPeers", minPeers)
        task = trainingContract if trainingContract is not None else os.environ.get(TASK_ENV, "default")
        if not isinstance(task, str) or not NAME_RE.fullmatch(task):
            raise ValueError(
                f"trainingContract={task!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        self.trainingContract = task
        if not isinstance(useAdaptiveSync, bool):
            raise ValueError(f"useAdaptiveSync={useAdaptiveSync!r} is not allowed: pass True or False")
        self.useAdaptiveSync = useAdaptiveSync
        if useAdaptiveSync and adsValData is None:
            raise ValueError(
                "adsValData=None is not allowed with useAdaptiveSync=True: pass validation data (x, y) "
                "or a dataset, or set useAdaptiveSync=False"
            )
        self.adsValData = adsValData
        self.adsValBatchSize = None if adsValBatchSize is None else _positive_int("adsValBatchSize", adsValBatchSize)
        if mergeMethod not in MERGE_METHODS:
            raise ValueError(f"mergeMethod={mergeMethod!r} is not allowed: use one of {list(MERGE_METHODS)}")
        self.mergeMethod = mergeMethod
        if not isinstance(secureAggregation, bool):
            raise ValueError(f"secureAggregation={secureAggregation!r} is not allowed: pass True or False")
        if secureAggregation and mergeMethod != "mean":
            raise ValueError(
                f"secureAggregation=True cannot be combined with mergeMethod={mergeMethod!r}: a median, trimmed "
                "mean or Krum must see every site's model, which secure aggregation hides. Use mergeMethod='mean' "
                f"with secureAggregation=True, or keep mergeMethod={mergeMethod!r} with secureAggregation=False"
            )
        self.secureAggregation = secureAggregation
        self.nodeWeightage = _positive_int("nodeWeightage", nodeWeightage, "an integer from 1 to 100")
        if self.nodeWeightage > 100:
            raise ValueError(f"nodeWeightage={nodeWeightage!r} is not allowed: use an integer from 1 to 100")
        if mergeWeighting not in MERGE_WEIGHTINGS:
            raise ValueError(f"mergeWeighting={mergeWeighting!r} is not allowed: use one of {list(MERGE_WEIGHTINGS)}")
        self.mergeWeighting = mergeWeighting
        self.totalEpochs = None if totalEpochs is None else _positive_int("totalEpochs", totalEpochs)
        if checkinModelOnTrainEnd not in CHECKIN_MODES:
            raise ValueError(
                f"checkinModelOnTrainEnd={checkinModelOnTrainEnd!r} is not allowed: use one of {list(CHECKIN_MODES)}"
            )
        self.checkinModelOnTrainEnd = checkinModelOnTrainEnd
        if logger is not None and not isinstance(logger, logging.Logger):
            raise ValueError(f"logger={logger!r} is not allowed: pass a logging.Logger or None")
        self.logger = logger or _default_logger()
        platform = mlPlatform.upper() if isinstance(mlPlatform, str) else mlPlatform
        if platform == "PYTORCH":
            raise ValueError(
                "mlPlatform='PYTORCH' is not supported: this callback trains Keras models; build the model with "
                "Keras on the torch backend (KERAS_BACKEND=torch) and pass mlPlatform='KERAS'"
            )
        if platform not in ML_PLATFORMS:
            raise ValueError(f"mlPlatform={mlPlatform!r} is not allowed: use 'KERAS' (or HPE's 'TF', the same here)")
        self.mlPlatform = platform
        for name, value, kind in (
            ("lossFunction", lossFunction, str),
            ("lossFunctionArgs", lossFunctionArgs, dict),
            ("metricFunction", metricFunction, str),
            ("metricFunctionArgs", metricFunctionArgs, dict),
        ):
            if value is not None and not isinstance(value, kind):
                raise ValueError(
                    f"{name}={value!r} is not allowed: pass a {kind.__name__} or None (it is ignored on Keras, "
                    "as in HPE; the compiled loss and metrics are used)"
                )
        self.lossFunction, self.lossFunctionArgs = lossFunction, lossFunctionArgs
        self.metricFunction, self.metricFunctionArgs = metricFunction, metricFunctionArgs
        self.serviceUrl = serviceUrl or os.environ.get(SERVICE_URL_ENV, DEFAULT_SERVICE_URL)
        if not self.serviceUrl.startswith(("http://", "https://")):
            raise ValueError(f"serviceUrl={self.serviceUrl!r} is not allowed: use an http:// or https:// URL")
        self.quorumWaitSeconds = _positive_number("quorumWaitSeconds", quorumWaitSeconds)
        self.leaderTimeoutSeconds = _positive_number("leaderTimeoutSeconds", leaderTimeoutSeconds)
        if self.leaderTimeoutSeconds <= 0:
            raise ValueError("leaderTimeoutSeconds=0 is not allowed: give the leader at least a moment (> 0)")
        self.syncTimeoutSeconds = _positive_number("syncTimeoutSeconds", syncTimeoutSeconds)
        if isinstance(maxRounds, bool) or not isinstance(maxRounds, int) or maxRounds < 0:
            raise ValueError(f"maxRounds={maxRounds!r} is not allowed: use an integer >= 0 (0: no limit)")
        self.maxRounds = maxRounds
        self.privacy_settings = PrivacySettings.from_options(
            dpClipNorm,
            dpNoiseMultiplier,
            dpTargetEpsilon,
            dpDelta,
            dpMaxEpsilon,
            dpPlannedSyncs,
            dpShareTrainingMetrics,
        )
        if self.privacy_settings is not None and useAdaptiveSync:
            raise ValueError(
                "useAdaptiveSync=True is not allowed with differential privacy: when a site syncs would then depend "
                "on its validation loss, which the privacy guarantee does not cover; pass useAdaptiveSync=False"
            )
        self.privacy: SitePrivacy | None = None  # made at train begin
        self.privacy_budget_spent = False
        self.loopback = os.environ.get(LOOPBACK_ENV, "") not in ("", "0", "false", "False")
        # Training-time state.
        self._client: ServiceClient | None = None
        self._layout = ""
        self._interval = self.syncFrequency
        self._steps_since_sync = 0
        self._epoch_batches = 0  # batches of this epoch seen so far (Keras may report them k at a time)
        self._last_val_loss: float | None = None
        self._metrics: dict[str, float] = {}
        self._task_over = False
        self.rounds_synced = 0
        self.sync_seconds: list[float] = []
        self.last_sync_timings: dict = {}

    @property
    def sync_interval(self) -> int:
        """Batches between syncs now: ``syncFrequency``, or what adaptive sync made of it."""
        return self._interval

    def merge_weight(self) -> int:
        """This site's weight in the next ``"mean"`` merge (see ``mergeWeighting``)."""
        steps = max(self._steps_since_sync, 1) if self.mergeWeighting == "steps" else 1
        return steps * self.nodeWeightage

    # ------------------------------------------------------------------ helpers

    def _spec(self) -> dict:
        self._layout = serialization.layout_of(self.model.get_weights())
        return {
            "fingerprint": serialization.fingerprint(self._layout),
            "layout": self._layout,
            "min_peers": self.minPeers,
            "merge_method": self.mergeMethod,
            "quorum_wait_ms": int(self.quorumWaitSeconds * 1000),
            "leader_timeout_ms": int(self.leaderTimeoutSeconds * 1000),
            "max_rounds": self.maxRounds,
        } | ({"secure_aggregation": True} if self.secureAggregation else {})

    def _load(self, arrays: list[np.ndarray]) -> None:
        self.model.set_weights(arrays)

    def _sync(self, why: str) -> None:
        """Sends the weights, waits for the merged model, loads it."""
        assert self._client is not None
        t0 = time.perf_counter()
        weight = self.merge_weight()
        weights, metrics = self._outgoing()
        t1 = time.perf_counter()
        # The arrays go to the service as a safetensors file written tensor by tensor (no serialised copy).
        status = self._client.sync(
            self.trainingContract, weights, weight, self.syncTimeoutSeconds, metrics=metrics or None
        )
        del weights
        t2 = time.perf_counter()
        arrays = self._client.blob(status["merged_sha256"], self._layout)
        t3 = time.perf_counter()
        self._load(arrays)
        if self.privacy is not None:
            self.privacy.set_reference(arrays)  # the next update is measured from the merged model
        # Where this sync's time went, in ms: here, and in the service (status["timings_ms"]).
        self.last_sync_timings = {
            "get weights": (t1 - t0) * 1000,
            "write, hand over and wait": (t2 - t1) * 1000,
            "download and check": (t3 - t2) * 1000,
            "load": (time.perf_counter() - t3) * 1000,
            "service": status.get("timings_ms", {}),
        }
        self._steps_since_sync = 0
        self.rounds_synced += 1
        elapsed = time.perf_counter() - t0
        self.sync_seconds.append(elapsed)
        self.logger.info(
            "%s: round %d merged (%s%s) in %.2f s",
            why,
            status["round"],
            status["merged_sha256"][:12],
            "" if status["contributed"] else "; this site's update arrived after the round closed",
            elapsed,
        )
        if status["task_status"] == "done" and not self._task_over:
            self._task_over = True
            self.model.stop_training = True
            self.logger.info("the swarm says task %s is over: stopping training", self.trainingContract)
        if self.useAdaptiveSync:
            self._adapt_interval()

    def _outgoing(self) -> tuple[list[np.ndarray], dict[str, float]]:
        """The weights and metrics a sync sends: as trained, or with differential privacy, noised."""
        weights = self.model.get_weights()
        if self.privacy is None:
            return weights, dict(self._metrics)
        metrics = dict(self._metrics) if self.privacy_settings and self.privacy_settings.share_training_metrics else {}
        if self.privacy.reference is not None:  # not the first sync: that one aligns the data-free starting weights
            if not all(np.isfinite(w).all() for w in weights if np.issubdtype(w.dtype, np.floating)):
                raise RuntimeError(
                    "training diverged: the weights are no longer finite. With differential privacy the noise "
                    f"(std {self.privacy.settings.clip_norm * (self.privacy.noise_multiplier or 0.0):.3g} per weight "
                    "each sync) may be too large for this model: lower dpClipNorm, merge less often, or use a smaller "
                    "model (docs/privacy.md, 'Choosing C and z')"
                )
            weights = self.privacy.privatize(weights)
            self.logger.info(
                "differential privacy: update norm %.4g clipped to %.4g, noise std %.4g; epsilon %.4g at delta %g "
                "after %d noisy syncs",
                self.privacy.last_update_norm,
                self.privacy.settings.clip_norm,
                self.privacy.settings.clip_norm * (self.privacy.noise_multiplier or 0.0),
                self.privacy.epsilon,
                self.privacy.settings.delta,
                self.privacy.releases,
            )
        metrics.update(self.privacy.report())
        return weights, metrics

    def _budget_allows_sync(self) -> bool:
        """False (and training told to stop) when one more noisy sync would pass ``dpMaxEpsilon``."""
        if self.privacy is None or self.privacy.reference is None or self.privacy.budget_allows_release():
            return True
        if not self.privacy_budget_spent:
            self.privacy_budget_spent = True
            self.model.stop_training = True
            self.logger.warning(
                "privacy budget spent: one more sync would take epsilon from %.4g to %.4g, above dpMaxEpsilon=%g "
                "(delta %g); stopping training after %d noisy syncs",
                self.privacy.epsilon,
                self.privacy.epsilon_if_released(),
                self.privacy.settings.max_epsilon,
                self.privacy.settings.delta,
                self.privacy.releases,
            )
        return False

    def _planned_private_syncs(self) -> int | None:
        """Noisy syncs this fit will make at most: fit's batches / syncFrequency, capped by maxRounds."""
        params = self.params or {}
        steps, epochs = params.get("steps"), params.get("epochs")
        if not steps or not epochs:
            return None
        planned = -(-int(steps) * int(epochs) // self.syncFrequency)  # the last, partial interval syncs at train end
        if self.maxRounds:
            planned = min(planned, self.maxRounds - 1)  # round 0 aligns the starting weights: not noisy
        return max(planned, 1)

    def _start_privacy(self) -> None:
        assert self.privacy_settings is not None
        self.privacy = SitePrivacy(self.privacy_settings)
        self.privacy.plan(self._planned_private_syncs())
        s = self.privacy_settings
        if any(isinstance(layer, keras.layers.BatchNormalization) for layer in _all_layers(self.model)):
            self.logger.warning(
                "differential privacy: BatchNormalization's moving statistics are noised too (a moving variance can "
                "turn negative); prefer LayerNormalization or GroupNormalization"
            )
        self.logger.info(
            "differential privacy on: clip %g, noise multiplier %.4g (noise std %.4g), delta %g, %s",
            s.clip_norm,
            self.privacy.noise_multiplier,
            s.clip_norm * (self.privacy.noise_multiplier or 0.0),
            s.delta,
            f"target epsilon {s.target_epsilon:g} over {self.privacy.planned_syncs} syncs"
            if s.target_epsilon is not None
            else (f"stop at epsilon {s.max_epsilon:g}" if s.max_epsilon is not None else "no epsilon limit"),
        )

    def _remember_metrics(self, logs: dict | None) -> None:
        """Keeps the latest finite scalar of each logged metric, to report with the next sync."""
        for name, value in (logs or {}).items():
            if not isinstance(name, str) or not METRIC_NAME_RE.fullmatch(name) or isinstance(value, bool):
                continue
            if name not in self._metrics and len(self._metrics) >= MAX_METRICS:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue  # not a scalar
            if math.isfinite(number):
                self._metrics[name] = number

    def _adapt_interval(self) -> None:
        x = self.adsValData
        if isinstance(x, tuple) and len(x) >= 2:
            result = self.model.evaluate(x[0], x[1], batch_size=self.adsValBatchSize, verbose=0)
        else:
            result = self.model.evaluate(x, batch_size=self.adsValBatchSize, verbose=0)
        loss = float(result[0] if isinstance(result, (list, tuple)) else result)
        self._remember_metrics({"ads_val_loss": loss})
        previous, self._last_val_loss = self._last_val_loss, loss
        if previous is None or previous <= 0:
            return
        change = (previous - loss) / previous
        old = self._interval
        if change < -0.01:
            self._interval = max(self.syncFrequency, self._interval // 2)
        elif change < 0.01:
            self._interval = min(4 * self.syncFrequency, self._interval * 2)
        if self._interval != old:
            self.logger.info(
                "adaptive sync: validation loss %.4f (was %.4f): sync every %d batches now",
                loss,
                previous,
                self._interval,
            )

    # ------------------------------------------------------------------ Keras hooks

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Joins the swarm and starts from the swarm's weights."""
        spec = self._spec()
        epochs = (self.params or {}).get("epochs")
        if self.totalEpochs is not None and epochs is not None and epochs != self.totalEpochs:
            self.logger.warning(
                "totalEpochs=%d but fit trains %d epochs: progress lines count to %d; pass totalEpochs=%d",
                self.totalEpochs,
                epochs,
                self.totalEpochs,
                epochs,
            )
        per_call = getattr(self.model, "steps_per_execution", 1) or 1
        if isinstance(per_call, int) and per_call > 1 and self.syncFrequency % per_call:
            self.logger.warning(
                "steps_per_execution=%d does not divide syncFrequency=%d: Keras hands over the weights every %d "
                "batches, so syncs come every %d batches; compile with a steps_per_execution that divides %d",
                per_call,
                self.syncFrequency,
                per_call,
                -(-self.syncFrequency // per_call) * per_call,
                self.syncFrequency,
            )
        ignored = [n for n in ("lossFunction", "metricFunction") if getattr(self, n) is not None]
        if ignored:
            self.logger.info(
                "%s: ignored on Keras, as in HPE; the loss and metrics model.compile set are reported",
                " and ".join(ignored),
            )
        if self.loopback:
            self.logger.warning(
                "%s is set: training alone, no swarm (task %s, %d weight tensors, sync every %d batches)",
                LOOPBACK_ENV,
                self.trainingContract,
                len(self._layout.split(";")),
                self.syncFrequency,
            )
            return
        if self.privacy_settings is not None and self.privacy is None:
            self._start_privacy()  # once per callback: a second fit goes on spending the same budget
        elif self.privacy is not None and not self.privacy.budget_allows_release():
            # A second fit: the model has trained on the site's data, so even its first sync is noisy and counted.
            raise RuntimeError(
                f"this callback's privacy budget is spent (epsilon {self.privacy.epsilon:.4g} of dpMaxEpsilon="
                f"{self.privacy.settings.max_epsilon:g}): fit again only with a new budget on purpose"
            )
        self._client = ServiceClient(self.serviceUrl, self.logger)
        try:
            joined = self._client.join(self.trainingContract, spec)
        except SwarmServiceError as exc:
            raise RuntimeError(f"could not join swarm task {self.trainingContract!r}: {exc}") from exc
        self.logger.info(
            "joined task %s as %s (round %d; sites: %s)",
            self.trainingContract,
            joined["node"],
            joined["current_round"],
            ", ".join(joined["nodes"]),
        )
        if joined["status"] == "done":
            raise RuntimeError(f"swarm task {self.trainingContract!r} is already over; use a new trainingContract")
        if joined["latest_merged"] is not None:
            latest = self._client.latest(self.trainingContract, self._layout)
            if latest is not None:
                self._load(latest[1])
                if self.privacy is not None:
                    self.privacy.set_reference(latest[1])
                self.logger.info("late join: starting from the swarm's merged model of round %d", latest[0])
                return
        self._sync("train begin")

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Starts counting this epoch's batches."""
        self._epoch_batches = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Counts batches and syncs every ``syncFrequency`` (or the adapted interval).

        With ``steps_per_execution`` = k, Keras calls this once per k batches
        with the last one's index: the batches are counted from the index, so
        syncs keep to ``syncFrequency`` batches (rounded up to a multiple of k).
        """
        if self.loopback or self._task_over or self.privacy_budget_spent:
            return
        self._remember_metrics(logs)
        self._steps_since_sync += max(1, batch + 1 - self._epoch_batches)
        self._epoch_batches = batch + 1
        if self._steps_since_sync >= self._interval and self._budget_allows_sync():
            self._sync(f"batch {batch + 1}")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Remembers the epoch's metrics (with ``val_*`` when ``fit`` validates) for the next sync."""
        if not self.loopback:
            self._remember_metrics(logs)
        total = self.totalEpochs or (self.params or {}).get("epochs")
        self.logger.info(
            "epoch %d%s done; %d syncs so far%s",
            epoch + 1,
            f" of {total}" if total else "",
            self.rounds_synced,
            "".join(f", {k} {float(v):.4g}" for k, v in (logs or {}).items() if k in ("loss", "val_loss")),
        )

    def _load_final_model(self) -> None:
        """Waits until every site is done, then loads the swarm's last merged model.

        A site that finishes early would otherwise keep its own model while
        the others merge on (with its service standing in): every site ends
        with the same, final swarm model instead. The wait is bounded by
        ``syncTimeoutSeconds``; past it the site keeps its model and says so.
        """
        assert self._client is not None
        give_up = time.monotonic() + self.syncTimeoutSeconds
        last_log = time.monotonic()
        training: list[str] = []
        round_no = -1
        while True:
            try:
                record, current = self._client.task_and_round(self.trainingContract)
            except SwarmServiceError as exc:  # e.g. the ledger unreachable for a moment: ask again
                record = current = None
                self.logger.debug("task status not available (%s); asking again", exc)
            if record is not None and current is not None:
                # A round closed before the task ended is still being merged: its model is the final one.
                if record["status"] == "done" and current["status"] != "closed":
                    break
                training = sorted(n for n, i in record["nodes"].items() if i["status"] == "active")
                round_no = record["latest_merged"]["round"] if record["latest_merged"] else -1
            if time.monotonic() > give_up:
                self.logger.warning(
                    "the swarm did not finish within %.0f s (still training: %s); keeping the model of round %d",
                    self.syncTimeoutSeconds,
                    ", ".join(training) or "unknown",
                    round_no,
                )
                return
            if time.monotonic() - last_log > 30:
                self.logger.info("waiting for the swarm to finish; still training: %s", ", ".join(training))
                last_log = time.monotonic()
            time.sleep(0.5)
        try:
            latest = self._client.latest(self.trainingContract, self._layout)
        except SwarmServiceError as exc:
            self.logger.warning("could not load the swarm's final model (%s); keeping this site's", exc)
            return
        if latest is not None:
            self._load(latest[1])
            self.logger.info("loaded the swarm's final model (round %d)", latest[0])

    def on_train_end(self, logs: dict | None = None) -> None:
        """Checks in per ``checkinModelOnTrainEnd``; waits for the swarm to end, then loads its final model."""
        if self.loopback or self._client is None:
            return
        try:
            mode = self.checkinModelOnTrainEnd
            if mode == "leave" or self._task_over:
                self._client.checkin(self.trainingContract, "leave")
                self.logger.info("training ended; left task %s", self.trainingContract)
                return
            final = self.model.get_weights()
            if mode in ("snapshot", "active") and self._steps_since_sync > 0 and self._budget_allows_sync():
                # The steps since the last sync count too: one more merge with them in it.
                self._sync("train end")
                if self._task_over:
                    self._client.checkin(self.trainingContract, "leave")
                    return
            # snapshot: the weights at the stop; active: the merged model just loaded, then each new one.
            standing = final if mode == "snapshot" else self.model.get_weights()
            if self.privacy is not None:
                # Nothing new leaves the site: its last noisy update (snapshot) or the merged model it holds.
                standing = self.privacy.safe_to_share() if mode == "snapshot" else list(self.privacy.reference or [])
            self._client.checkin(
                self.trainingContract,
                "finish",
                standing,
                weight=self.nodeWeightage,
                contribute=mode,
            )
            self.logger.info(
                "training ended; until every site is done this site's service contributes %s",
                {
                    "snapshot": "the final weights (snapshot)",
                    "active": "each round's merged model (active)",
                    "inactive": "nothing: it counts towards minPeers with weight 0 (inactive)",
                }[mode],
            )
            self._load_final_model()
        finally:
            self._client.close()
