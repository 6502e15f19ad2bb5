"""Differential privacy for a site's updates: clipping, Gaussian noise and the privacy accountant.

Site-level differential privacy in the style of DP-FedAvg (McMahan et al.,
"Learning Differentially Private Recurrent Language Models", ICLR 2018),
with the noise added at the site, before anything leaves it:

1. the update is what the site trained since the last merged model it
   loaded: ``update = weights - reference``;
2. the whole update (every floating-point tensor, trainable or not, as one
   vector) is scaled down to an L2 norm of at most ``clip_norm`` (C);
3. Gaussian noise of standard deviation ``noise_multiplier * C`` (z C) is
   added to every coordinate;
4. the site sends ``reference + noisy update``. Tensors that are not
   floating point (e.g. integer counters) are sent as the reference has them.

The unit of privacy is the site's whole data set: any two data sets of the
site, however different, change a clipped update by at most 2 C in L2
(both updates lie in the ball of radius C). Each sync is therefore a
Gaussian mechanism of noise multiplier z / 2 relative to that sensitivity,
and the run is their composition, accounted with the Rényi-DP accountant
of Google's ``dp-accounting`` (Mironov 2017), which gives epsilon at the
chosen delta. Because the noise is added before the update leaves the site,
the guarantee holds against the leader, the other sites and anyone who
reads the wire or the blob stores. docs/privacy.md says what it does not cover.

Pure: numpy and the accountant, no Keras and no I/O. The accountant is
imported when first needed (``pip install 'swarm-keras[dp]'``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

# Any two data sets of a site move the clipped update by at most 2 C (replace-one at the site level).
SENSITIVITY_IN_CLIP_NORMS = 2.0
DEFAULT_DELTA = 1e-5
# Metrics each sync reports (names as the service's X-Swarm-Metrics header allows).
EPSILON_METRIC = "dp_epsilon"
_INSTALL_HINT = "install the accountant with `pip install 'swarm-keras[dp]'` (dp-accounting)"


def _accounting() -> Any:
    try:
        import dp_accounting
        from dp_accounting import rdp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"differential privacy needs Google's dp-accounting: {_INSTALL_HINT}") from exc
    return dp_accounting, rdp


def _event(noise_multiplier: float, syncs: int) -> Any:
    dp_accounting, _ = _accounting()
    single = dp_accounting.GaussianDpEvent(noise_multiplier / SENSITIVITY_IN_CLIP_NORMS)
    return dp_accounting.SelfComposedDpEvent(single, syncs)


def epsilon_after(noise_multiplier: float, syncs: int, delta: float) -> float:
    """Epsilon at ``delta`` after ``syncs`` noisy updates of noise multiplier ``noise_multiplier`` (RDP accountant)."""
    if syncs <= 0:
        return 0.0
    _, rdp = _accounting()
    accountant = rdp.RdpAccountant()
    accountant.compose(_event(noise_multiplier, syncs))
    return float(accountant.get_epsilon(delta))


def noise_multiplier_for(target_epsilon: float, syncs: int, delta: float) -> float:
    """The smallest noise multiplier (to 1e-4 relative) whose ``syncs`` updates stay within ``target_epsilon``."""
    dp_accounting, rdp = _accounting()
    z = dp_accounting.calibrate_dp_mechanism(
        rdp.RdpAccountant,
        lambda z: _event(z, syncs),
        target_epsilon,
        delta,
        bracket_interval=dp_accounting.LowerEndpointAndGuess(1e-3, 1.0),
        tol=1e-6,
    )
    z = float(z)
    # Brent's method stops within its tolerance on either side: step up until the budget holds.
    while epsilon_after(z, syncs, delta) > target_epsilon:
        z *= 1.0001
    return z


def clip_update(update: list[np.ndarray], clip_norm: float) -> tuple[list[np.ndarray], float]:
    """Scales the update (all tensors as one vector, in float64) to an L2 norm of at most ``clip_norm``.

    Returns the clipped tensors and the norm before clipping.
    """
    norm = math.sqrt(sum(float(np.sum(np.square(u, dtype=np.float64))) for u in update))
    scale = 1.0 if norm <= clip_norm else clip_norm / norm
    return [np.asarray(u, dtype=np.float64) * scale for u in update], norm


def secure_generator() -> np.random.Generator:
    """A numpy generator seeded from 256 bits of the operating system's entropy (os.urandom)."""
    return np.random.Generator(np.random.PCG64DXSM(np.random.SeedSequence(int.from_bytes(os.urandom(32), "big"))))


def _number(name: str, value: Any, low: float, high: float = math.inf, what: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}={value!r} is not allowed: pass {what}")
    value = float(value)
    if not (math.isfinite(value) and low < value < high):
        raise ValueError(f"{name}={value!r} is not allowed: pass {what}")
    return value


@dataclass(frozen=True)
class PrivacySettings:
    """A site's differential-privacy options, validated (see ``SwarmCallback``'s ``dp*`` arguments)."""

    clip_norm: float
    noise_multiplier: float | None
    target_epsilon: float | None
    delta: float
    max_epsilon: float | None
    planned_syncs: int | None
    share_training_metrics: bool

    @classmethod
    def from_options(
        cls,
        clip_norm: Any = None,
        noise_multiplier: Any = None,
        target_epsilon: Any = None,
        delta: Any = None,
        max_epsilon: Any = None,
        planned_syncs: Any = None,
        share_training_metrics: Any = False,
    ) -> PrivacySettings | None:
        """The settings, or None when differential privacy is off (every option left at its default).

        Raises ValueError naming the option and what to pass instead.
        """
        given = {
            "dpNoiseMultiplier": noise_multiplier,
            "dpTargetEpsilon": target_epsilon,
            "dpDelta": delta,
            "dpMaxEpsilon": max_epsilon,
            "dpPlannedSyncs": planned_syncs,
        }
        if clip_norm is None:
            set_ = [k for k, v in given.items() if v is not None] + (
                ["dpShareTrainingMetrics"] * bool(share_training_metrics)
            )
            if set_:
                raise ValueError(
                    f"{', '.join(set_)} given without dpClipNorm: differential privacy needs dpClipNorm, the L2 bound "
                    "on a site's update (e.g. dpClipNorm=1.0), or leave every dp* option unset"
                )
            return None
        clip = _number("dpClipNorm", clip_norm, 0.0, what="a finite number > 0, the L2 bound on the update")
        if (noise_multiplier is None) == (target_epsilon is None):
            raise ValueError(
                "differential privacy needs exactly one of dpNoiseMultiplier (noise std = z x dpClipNorm) or "
                f"dpTargetEpsilon (z computed from it); got dpNoiseMultiplier={noise_multiplier!r}, "
                f"dpTargetEpsilon={target_epsilon!r}"
            )
        z = (
            None
            if noise_multiplier is None
            else _number("dpNoiseMultiplier", noise_multiplier, 0.0, what="a finite number > 0")
        )
        target = (
            None
            if target_epsilon is None
            else _number("dpTargetEpsilon", target_epsilon, 0.0, what="a finite number > 0")
        )
        d = (
            DEFAULT_DELTA
            if delta is None
            else _number("dpDelta", delta, 0.0, 1.0, "a number between 0 and 1 (e.g. 1e-5)")
        )
        cap = None if max_epsilon is None else _number("dpMaxEpsilon", max_epsilon, 0.0, what="a finite number > 0")
        if target is not None and cap is not None and cap < target:
            raise ValueError(
                f"dpMaxEpsilon={cap:g} is below dpTargetEpsilon={target:g}: the site would stop before its planned "
                "syncs; leave dpMaxEpsilon unset (it defaults to dpTargetEpsilon) or raise it"
            )
        if planned_syncs is not None:
            if target is None:
                raise ValueError(
                    f"dpPlannedSyncs={planned_syncs!r} only serves dpTargetEpsilon (to compute the noise); with "
                    "dpNoiseMultiplier leave it unset"
                )
            if isinstance(planned_syncs, bool) or not isinstance(planned_syncs, (int, np.integer)) or planned_syncs < 1:
                raise ValueError(f"dpPlannedSyncs={planned_syncs!r} is not allowed: pass an integer >= 1")
            planned_syncs = int(planned_syncs)
        if not isinstance(share_training_metrics, bool):
            raise ValueError(f"dpShareTrainingMetrics={share_training_metrics!r} is not allowed: pass True or False")
        return cls(
            clip_norm=clip,
            noise_multiplier=z,
            target_epsilon=target,
            delta=d,
            max_epsilon=target if cap is None else cap,
            planned_syncs=planned_syncs,
            share_training_metrics=share_training_metrics,
        )


class SitePrivacy:
    """One site's private releases during a run: the reference model, the noise, the spent budget.

    Args:
        settings: the validated options.
        rng: the noise generator; default `secure_generator()`. Pass a seeded
            one only in tests.
    """

    def __init__(self, settings: PrivacySettings, rng: np.random.Generator | None = None) -> None:
        self.settings = settings
        self.rng = rng if rng is not None else secure_generator()
        self.noise_multiplier: float | None = settings.noise_multiplier
        self.planned_syncs: int | None = None
        self.releases = 0
        self.reference: list[np.ndarray] | None = None
        self.last_release: list[np.ndarray] | None = None
        self.last_update_norm: float | None = None
        self.update_norms: list[float] = []  # before clipping, for choosing dpClipNorm; never sent
        self._epsilon = 0.0

    def plan(self, estimated_syncs: int | None) -> None:
        """Fixes the noise multiplier before training: given, or computed from the target and the syncs planned.

        ``estimated_syncs`` (the callback's count from ``fit``'s epochs and
        steps) is used unless ``dpPlannedSyncs`` was given.
        """
        if self.settings.target_epsilon is None:
            return
        planned = self.settings.planned_syncs or estimated_syncs
        if planned is None or planned < 1:
            raise ValueError(
                "dpTargetEpsilon needs the number of syncs this site will make, and fit does not say how many steps "
                "an epoch has (a dataset of unknown length): pass dpPlannedSyncs, or dpNoiseMultiplier instead"
            )
        self.planned_syncs = planned
        self.noise_multiplier = noise_multiplier_for(self.settings.target_epsilon, planned, self.settings.delta)

    @property
    def epsilon(self) -> float:
        """Epsilon at ``delta`` spent so far (0 before the first noisy update)."""
        return self._epsilon

    def epsilon_if_released(self) -> float:
        """Epsilon after one more noisy update."""
        assert self.noise_multiplier is not None, "plan() first"
        return epsilon_after(self.noise_multiplier, self.releases + 1, self.settings.delta)

    def budget_allows_release(self) -> bool:
        """Whether one more noisy update keeps epsilon within ``dpMaxEpsilon`` (always, without a cap)."""
        cap = self.settings.max_epsilon
        return cap is None or self.epsilon_if_released() <= cap

    def set_reference(self, arrays: list[np.ndarray]) -> None:
        """The model the next update is measured from: the merged model just loaded (public to the swarm)."""
        self.reference = [np.array(a, copy=True) for a in arrays]

    def privatize(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """The weights to send: reference + clipped update + Gaussian noise; counts the release."""
        assert self.reference is not None and self.noise_multiplier is not None
        if len(arrays) != len(self.reference):
            raise ValueError(f"the model has {len(arrays)} tensors, the reference {len(self.reference)}")
        floats = [i for i, a in enumerate(arrays) if np.issubdtype(np.asarray(a).dtype, np.floating)]
        update = [np.asarray(arrays[i], np.float64) - np.asarray(self.reference[i], np.float64) for i in floats]
        clipped, self.last_update_norm = clip_update(update, self.settings.clip_norm)
        self.update_norms.append(self.last_update_norm)
        std = self.noise_multiplier * self.settings.clip_norm
        out = [np.array(r, copy=True) for r in self.reference]  # non-float tensors: the reference's values
        for i, c in zip(floats, clipped, strict=True):
            noisy = np.asarray(self.reference[i], np.float64) + c + self.rng.normal(0.0, std, size=c.shape)
            out[i] = noisy.astype(np.asarray(arrays[i]).dtype)
        self.releases += 1
        self._epsilon = epsilon_after(self.noise_multiplier, self.releases, self.settings.delta)
        self.last_release = out
        return out

    def safe_to_share(self) -> list[np.ndarray]:
        """Weights this site may hand out after its last sync without spending budget.

        Its last noisy update if it made one (sending it again reveals
        nothing new), else the reference (the swarm's merged model).
        """
        chosen = self.last_release if self.last_release is not None else self.reference
        assert chosen is not None
        return [np.array(a, copy=True) for a in chosen]

    def report(self) -> dict[str, float]:
        """What a sync reports to the swarm: epsilon spent, delta, noise multiplier, clip norm, noisy syncs."""
        return {
            EPSILON_METRIC: self._epsilon,
            "dp_delta": self.settings.delta,
            "dp_noise_multiplier": float(self.noise_multiplier or 0.0),
            "dp_clip_norm": self.settings.clip_norm,
            "dp_syncs": float(self.releases),
        }
