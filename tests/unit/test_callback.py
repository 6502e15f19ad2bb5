"""SwarmCallback: argument checks that name the problem, loopback mode, HPE compatibility."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")

from swarm_keras import SwarmCallback  # noqa: E402
from swarm_keras.service_client import ServiceClient, SwarmServiceError  # noqa: E402


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"syncFrequency": 0}, ["syncFrequency=0", "integer >= 1"]),
        ({"syncFrequency": 2.5}, ["syncFrequency=2.5"]),
        ({"syncFrequency": True}, ["syncFrequency=True"]),
        ({"minPeers": -1}, ["minPeers=-1"]),
        ({"mergeMethod": "median"}, ["mergeMethod='median'", "coordmedian"]),
        (
            {"mergeMethod": "krum", "secureAggregation": True},
            ["secureAggregation=True", "mergeMethod='krum'", "mergeMethod='mean'", "secureAggregation=False"],
        ),
        ({"mergeMethod": "coordmedian", "secureAggregation": True}, ["mergeMethod='coordmedian'"]),
        ({"secureAggregation": "yes"}, ["secureAggregation='yes'", "True or False"]),
        ({"nodeWeightage": 101}, ["nodeWeightage=101", "1 to 100"]),
        ({"nodeWeightage": 0}, ["nodeWeightage=0"]),
        ({"checkinModelOnTrainEnd": "never"}, ["checkinModelOnTrainEnd='never'", "snapshot"]),
        ({"useAdaptiveSync": True}, ["adsValData=None", "useAdaptiveSync"]),
        ({"useAdaptiveSync": "yes"}, ["useAdaptiveSync='yes'"]),
        ({"adsValBatchSize": 0}, ["adsValBatchSize=0"]),
        ({"trainingContract": "has space"}, ["trainingContract='has space'"]),
        ({"trainingContract": "t\n"}, ["trainingContract="]),
        ({"totalEpochs": 0}, ["totalEpochs=0"]),
        ({"logger": "log"}, ["logger='log'", "logging.Logger"]),
        ({"serviceUrl": "127.0.0.1:1234"}, ["serviceUrl='127.0.0.1:1234'", "http://"]),
        ({"quorumWaitSeconds": -1}, ["quorumWaitSeconds=-1"]),
        ({"leaderTimeoutSeconds": 0}, ["leaderTimeoutSeconds=0"]),
        ({"syncTimeoutSeconds": float("nan")}, ["syncTimeoutSeconds=nan"]),
        ({"maxRounds": -2}, ["maxRounds=-2"]),
        ({"mergeWeighting": "samples"}, ["mergeWeighting='samples'", "'steps', 'node'"]),
        ({"mlPlatform": "PYTORCH"}, ["mlPlatform='PYTORCH'", "KERAS_BACKEND=torch", "mlPlatform='KERAS'"]),
        ({"mlPlatform": "sklearn"}, ["mlPlatform='sklearn'", "'KERAS'"]),
        ({"lossFunction": 3}, ["lossFunction=3", "str or None"]),
        ({"metricFunctionArgs": "num_classes=10"}, ["metricFunctionArgs='num_classes=10'", "dict or None"]),
        ({"dpNoiseMultiplier": 1.0}, ["dpNoiseMultiplier", "without dpClipNorm"]),
        ({"dpClipNorm": 1.0}, ["exactly one of dpNoiseMultiplier", "dpTargetEpsilon"]),
        ({"dpClipNorm": -1.0, "dpNoiseMultiplier": 1.0}, ["dpClipNorm=-1.0"]),
        ({"dpClipNorm": 1.0, "dpTargetEpsilon": 1.0, "dpDelta": 0}, ["dpDelta=0"]),
        (
            {"dpClipNorm": 1.0, "dpNoiseMultiplier": 1.0, "useAdaptiveSync": True, "adsValData": ([0], [0])},
            ["useAdaptiveSync=True", "differential privacy", "useAdaptiveSync=False"],
        ),
    ],
)
def test_invalid_arguments_name_argument_value_and_what_is_allowed(kwargs, words):
    args = {"syncFrequency": 4, "minPeers": 2, **kwargs}
    with pytest.raises(ValueError) as err:
        SwarmCallback(**args)
    for word in words:
        assert word in str(err.value)


def test_hpe_style_construction_and_logger():
    cb = SwarmCallback(
        syncFrequency=128,
        minPeers=3,
        useAdaptiveSync=False,
        adsValData=None,
        adsValBatchSize=None,
        mergeMethod="mean",
        nodeWeightage=10,
        totalEpochs=5,
        checkinModelOnTrainEnd="snapshot",
    )
    cb.logger.setLevel(logging.WARNING)  # what HPE scripts do
    assert cb.logger.level == logging.WARNING
    assert cb.trainingContract == os.environ.get("SWARM_TASK", "default")
    hpe = SwarmCallback(
        syncFrequency=8,
        minPeers=2,
        mlPlatform="TF",
        lossFunction="CrossEntropyLoss",
        lossFunctionArgs={"reduction": "mean"},
        metricFunction="Accuracy",
        metricFunctionArgs={"task": "multiclass", "num_classes": 10},
    )
    assert hpe.mlPlatform == "TF" and hpe.lossFunctionArgs == {"reduction": "mean"}
    assert SwarmCallback(syncFrequency=8, minPeers=2, mlPlatform="keras").mlPlatform == "KERAS"


_LOGGER_SCRIPT = """
import logging, sys
from swarm_keras import SwarmCallback
cb = SwarmCallback(syncFrequency=4, minPeers=2)
if sys.argv[1] == "configured":
    logging.basicConfig(level=logging.INFO, format="ROOT %(message)s", stream=sys.stderr)
cb.logger.setLevel("INFO")
cb.logger.info("hello from the swarm")
cb.logger.debug("not shown at INFO")
"""


@pytest.mark.parametrize(
    "setup, expected", [("none", "INFO swarm_keras: hello from the swarm"), ("configured", "ROOT hello from the swarm")]
)
def test_logger_set_level_alone_prints_and_configured_logging_prints_once(setup, expected):
    import subprocess
    import sys

    # A fresh process: no logging configured (pytest configures it here). Keras's numpy backend starts fast.
    proc = subprocess.run(
        [sys.executable, "-c", _LOGGER_SCRIPT, setup],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=dict(os.environ, KERAS_BACKEND="numpy"),
    )
    lines = [line for line in proc.stderr.splitlines() if "hello from the swarm" in line]
    assert len(lines) == 1 and lines[0].endswith(expected), proc.stderr
    assert "not shown" not in proc.stderr


def test_service_url_falls_back_to_environment(monkeypatch):
    monkeypatch.setenv("SWARM_SN_URL", "http://127.0.0.1:4242")
    assert SwarmCallback(syncFrequency=1, minPeers=1).serviceUrl == "http://127.0.0.1:4242"
    assert SwarmCallback(syncFrequency=1, minPeers=1, serviceUrl="http://h:1").serviceUrl == "http://h:1"


def _model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="binary_crossentropy")
    return model


def test_loopback_mode_trains_alone_without_a_service(monkeypatch, caplog):
    monkeypatch.setenv("SWARM_LOOPBACK", "1")
    monkeypatch.setenv("SWARM_SN_URL", "http://127.0.0.1:9")  # nothing listens there
    model = _model()
    before = [w.copy() for w in model.get_weights()]
    x = np.random.default_rng(0).standard_normal((64, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    cb = SwarmCallback(syncFrequency=2, minPeers=3)
    with caplog.at_level(logging.WARNING, logger="swarm_keras"):
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[cb])
    assert "training alone" in caplog.text
    assert cb.rounds_synced == 0
    assert not np.allclose(before[0], model.get_weights()[0]), "the model should still train"


def test_unreachable_service_says_how_to_start_one():
    client = ServiceClient("http://127.0.0.1:9", logging.getLogger("t"), connect_timeout_s=0.5)
    with pytest.raises(SwarmServiceError) as err:
        client.join("t", {})
    assert err.value.code == "UNREACHABLE"
    assert "swarm-sn --site" in str(err.value) and "SWARM_SN_URL" in str(err.value)


def test_fit_fails_with_a_clear_error_when_no_service_runs(monkeypatch):
    monkeypatch.delenv("SWARM_LOOPBACK", raising=False)
    cb = SwarmCallback(syncFrequency=2, minPeers=1, serviceUrl="http://127.0.0.1:9")
    cb_client_timeout = 0.5
    monkeypatch.setattr(
        "swarm_keras.callback.ServiceClient",
        lambda url, log: ServiceClient(url, log, connect_timeout_s=cb_client_timeout),
    )
    x = np.zeros((8, 3), np.float32)
    with pytest.raises(RuntimeError, match="could not join swarm task"):
        _model().fit(x, np.zeros(8), epochs=1, verbose=0, callbacks=[cb])


def test_adaptive_sync_widens_on_plateaus_and_narrows_when_a_merge_hurts(monkeypatch):
    x = np.zeros((4, 3), np.float32)
    cb = SwarmCallback(syncFrequency=8, minPeers=1, useAdaptiveSync=True, adsValData=(x, np.zeros(4)))
    model = _model()
    cb.set_model(model)
    losses = iter([1.0, 0.5, 0.499, 0.4985, 0.498, 0.497, 0.6, 0.7, 0.8])
    monkeypatch.setattr(model, "evaluate", lambda *a, **k: next(losses))
    seen = []
    for _ in range(9):
        cb._adapt_interval()
        seen.append(cb.sync_interval)
    # first: no reference; 0.5 improves 50 %: keep; then plateaus double up to 4x; worse losses halve back.
    assert seen == [8, 8, 16, 32, 32, 32, 16, 8, 8]


def test_merge_weight_by_steps_or_by_node():
    steps = SwarmCallback(syncFrequency=5, minPeers=2, nodeWeightage=3)
    node = SwarmCallback(syncFrequency=5, minPeers=2, nodeWeightage=3, mergeWeighting="node")
    assert steps.mergeWeighting == "steps", "the default weighs by steps since the last sync"
    for cb in (steps, node):
        cb._steps_since_sync = 5
    assert steps.merge_weight() == 15 and node.merge_weight() == 3
    for cb in (steps, node):
        cb._steps_since_sync = 0  # a sync with no step since the last (at train end) still counts once
    assert steps.merge_weight() == 3 and node.merge_weight() == 3


def test_wait_message_says_who_left_and_what_to_change_when_min_peers_cannot_be_met():
    from sn_service.contract import closable
    from sn_service.round_protocol import RoundDriver

    def node(status):
        return {"status": status, "last_seen_ms": 0, "endpoint": "", "identity": ""}

    rec = {
        "task": "t",
        "spec": {"min_peers": 3, "quorum_wait_ms": 1000},
        "nodes": {"site-a": node("left"), "site-b": node("active"), "site-c": node("finished")},
    }
    rnd = {"round": 4, "status": "open", "submissions": {"site-c": {}}, "first_submit_ms": 0}
    ok, why = closable(rec, rnd, 10)
    assert not ok
    text = RoundDriver._describe_wait(rec, rnd, why)
    assert "min_peers 3 cannot be met" in text and "site-b, site-c" in text and "site-a left" in text
    assert "minPeers <= 2" in text and "checkinModelOnTrainEnd" in text
    assert "more nodes to join" not in text
    # While enough sites remain, the contract's reason stands.
    rec["nodes"]["site-a"] = node("active")
    assert RoundDriver._describe_wait(rec, rnd, why).startswith(why)


@pytest.mark.parametrize(
    "params, sync_frequency, max_rounds, planned",
    [
        ({"steps": 10, "epochs": 3}, 2, 0, 15),  # 30 batches, a noisy sync every 2
        ({"steps": 10, "epochs": 3}, 4, 0, 8),  # 7 in training and the last 2 batches at train end
        ({"steps": 10, "epochs": 3}, 2, 6, 5),  # the task ends after round 5: round 0 is not noisy
        ({"steps": None, "epochs": 3}, 2, 0, None),  # a dataset of unknown length: dpPlannedSyncs needed
    ],
)
def test_noisy_syncs_planned_from_fit(params, sync_frequency, max_rounds, planned):
    cb = SwarmCallback(
        syncFrequency=sync_frequency, minPeers=2, maxRounds=max_rounds, dpClipNorm=1.0, dpTargetEpsilon=4.0
    )
    cb.set_params(params)
    assert cb._planned_private_syncs() == planned
    assert cb.privacy_settings.max_epsilon == 4.0 and cb.privacy is None  # made at train begin


def _private_callback(**kw) -> SwarmCallback:
    cb = SwarmCallback(syncFrequency=2, minPeers=2, dpClipNorm=0.1, dpNoiseMultiplier=1.0, **kw)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    cb.set_model(model)
    cb._start_privacy()
    cb._remember_metrics({"loss": 0.5, "accuracy": 0.9})
    return cb


def test_with_dp_a_sync_sends_noised_weights_and_only_privacy_metrics():
    cb = _private_callback()
    first, metrics = cb._outgoing()  # round 0: the data-free starting weights, nothing spent
    np.testing.assert_array_equal(first[0], cb.model.get_weights()[0])
    assert metrics["dp_epsilon"] == 0.0 and "loss" not in metrics
    cb.privacy.set_reference(cb.model.get_weights())
    sent, metrics = cb._outgoing()
    assert not np.allclose(sent[0], cb.model.get_weights()[0])  # noise of std 0.1 on every weight
    assert (
        metrics["dp_epsilon"] > 0
        and metrics["dp_syncs"] == 1.0
        and set(metrics)
        == {
            "dp_epsilon",
            "dp_delta",
            "dp_noise_multiplier",
            "dp_clip_norm",
            "dp_syncs",
        }
    )
    shared = _private_callback(dpShareTrainingMetrics=True)
    assert shared._outgoing()[1]["loss"] == 0.5


def test_with_dp_diverged_weights_fail_with_a_hint_and_spend_nothing():
    cb = _private_callback()
    cb.privacy.set_reference(cb.model.get_weights())
    cb.model.set_weights([np.full_like(w, np.nan) for w in cb.model.get_weights()])
    with pytest.raises(RuntimeError, match=r"training diverged.*dpClipNorm"):
        cb._outgoing()
    assert cb.privacy.releases == 0
