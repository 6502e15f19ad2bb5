"""Simulated multi-study expression cohorts, for data that cannot be had here.

The paper's leukaemia sets (A1-A3: thousands of samples from dozens of
studies) and its COVID-19 sets are not public in a form we can fetch. This
module makes stand-ins of the same size and structure, always labelled
``SIMULATED`` in ``ExpressionData.source``:

- every gene has a baseline level and spread (log2-like values);
- cases differ from controls in a *disease signature*: a subset of genes
  shifted up or down by ``effect_size`` gene standard deviations;
- every study adds a gene-wise *batch effect*: an additive offset and a
  multiplicative change of spread (the location/scale model that ComBat
  corrects), and whole data sets can add a platform offset;
- studies differ in size and in their share of cases.

The signature depends only on ``signature_seed``, so cohorts made with
different ``seed`` (e.g. the A1, A2 and A3 presets) share one biology and can
be pooled. Generation is vectorised, float32, and takes well under a second
for the largest preset (8,348 x 2,000).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from swarm_examples.apportionment import largest_remainder
from swarm_examples.expression_data import ExpressionData, concatenate_datasets

# The paper's classifier reads 2,000 genes.
DEFAULT_N_GENES = 2000
# Genes that differ in cases, unless a cohort has fewer genes than this.
DEFAULT_N_SIGNATURE_GENES = 50


@dataclass(frozen=True, eq=False)
class DiseaseSignature:
    """Gene-wise baseline and the case-vs-control difference.

    Args:
        gene_ids: the names of all genes.
        baseline_mean: each gene's mean level in controls.
        baseline_sd: each gene's within-class standard deviation.
        signature_genes: indices of the genes that differ in cases.
        case_shift: each gene's shift in cases (zero off the signature).
    """

    gene_ids: np.ndarray
    baseline_mean: np.ndarray
    baseline_sd: np.ndarray
    signature_genes: np.ndarray
    case_shift: np.ndarray


def make_disease_signature(
    n_genes: int = DEFAULT_N_GENES,
    n_signature_genes: int | None = None,
    effect_size: float = 0.7,
    signature_seed: int = 0,
) -> DiseaseSignature:
    """Draw gene baselines and a disease signature.

    Each signature gene is shifted up or down (at random) by ``effect_size``
    times its standard deviation, times a factor drawn from U(0.5, 1.5) so
    that some genes say more than others. With the defaults (50 genes, 0.7
    SD) the classes lie about 5 SD apart along the signature; after the
    default batch effects, the best linear score on the A2 preset reaches an
    AUC of about 0.999, the paper's swarm score, so nodes with little data
    have room to fall short of it.

    Raises:
        ValueError: sizes out of range, or a negative effect size.
    """
    if n_genes < 1:
        raise ValueError(f"n_genes={n_genes}; pass at least 1")
    if n_signature_genes is None:
        n_signature_genes = min(DEFAULT_N_SIGNATURE_GENES, n_genes)
    if not 0 <= n_signature_genes <= n_genes:
        raise ValueError(f"n_signature_genes={n_signature_genes}; pass 0..n_genes ({n_genes})")
    if effect_size < 0:
        raise ValueError(f"effect_size={effect_size}; pass a value >= 0 (in gene SDs)")
    rng = np.random.default_rng([signature_seed, 0x516E])
    baseline_mean = rng.normal(7.0, 1.5, n_genes).astype(np.float32)
    baseline_sd = rng.lognormal(np.log(0.5), 0.3, n_genes).astype(np.float32)
    signature_genes = np.sort(rng.choice(n_genes, n_signature_genes, replace=False))
    case_shift = np.zeros(n_genes, np.float32)
    direction = rng.choice(np.array([-1.0, 1.0]), n_signature_genes)
    strength = rng.uniform(0.5, 1.5, n_signature_genes)
    case_shift[signature_genes] = direction * strength * effect_size * baseline_sd[signature_genes]
    width = len(str(n_genes))
    return DiseaseSignature(
        gene_ids=np.array([f"G{j + 1:0{width}d}" for j in range(n_genes)]),
        baseline_mean=baseline_mean,
        baseline_sd=baseline_sd,
        signature_genes=signature_genes,
        case_shift=case_shift,
    )


def simulate_cohorts(
    n_samples: int,
    n_studies: int,
    case_fraction: float | Sequence[float] = 0.3,
    n_genes: int = DEFAULT_N_GENES,
    n_signature_genes: int | None = None,
    effect_size: float = 0.7,
    batch_shift_sd: float = 0.5,
    batch_scale_sd: float = 0.15,
    noise_sd: float = 1.0,
    platform_shift_sd: float = 0.0,
    study_size_concentration: float = 2.0,
    case_fraction_concentration: float = 2.0,
    label_names: tuple[str, str] = ("control", "case"),
    name: str = "cohort",
    seed: int = 0,
    signature_seed: int = 0,
) -> ExpressionData:
    """Simulate `n_samples` expression profiles from `n_studies` studies.

    Sample ``i`` of study ``k`` with class ``y`` (1 = case) has, for gene g::

        x = mean[g] + platform[g] + y * shift[g] + offset[k, g]
            + scale[k, g] * noise_sd * sd[g] * N(0, 1)

    with ``offset[k, g] ~ N(0, batch_shift_sd * sd[g])`` (additive batch
    effect), ``scale[k, g] = exp(N(0, batch_scale_sd))`` (multiplicative
    batch effect) and ``platform[g] ~ N(0, platform_shift_sd * sd[g])``
    shared by all studies of this cohort.

    Study sizes are drawn from a Dirichlet(``study_size_concentration``)
    (smaller: more uneven). With a single `case_fraction`, exactly
    ``round(case_fraction * n_samples)`` samples are cases, spread unevenly
    over studies: each study's share is drawn from a Beta distribution with
    that mean and concentration ``case_fraction_concentration`` (smaller:
    more studies of nearly only cases or only controls, as in real
    collections). With one fraction per study, each study gets exactly
    ``round(fraction * size)`` cases.

    Args:
        n_samples: number of samples (at least 2 per study).
        n_studies: number of studies; ``groups`` holds each sample's study.
        case_fraction: share of cases, overall or one value per study.
        n_genes: number of genes.
        n_signature_genes: genes that differ between cases and controls
            (default 50, or every gene when there are fewer).
        effect_size: the signature genes' mean shift, in gene SDs.
        batch_shift_sd: spread of the studies' additive offsets, in gene SDs.
        batch_scale_sd: spread of the log of the studies' scale factors.
        noise_sd: multiplies every gene's within-class SD.
        platform_shift_sd: spread of one offset shared by the whole cohort
            (e.g. RNA-seq vs arrays when cohorts are pooled), in gene SDs.
        study_size_concentration: Dirichlet concentration of study sizes.
        case_fraction_concentration: Beta concentration of study case shares.
        label_names: names of class 0 and class 1.
        name: prefix of sample and study ids, and part of the source text.
        seed: draws samples, studies and batch effects.
        signature_seed: draws the gene baselines and the disease signature.

    Returns:
        ExpressionData (float32) whose source starts with ``"SIMULATED"``.

    Raises:
        ValueError: an argument is out of range.

    Example:
        >>> data = simulate_cohorts(300, n_studies=5, case_fraction=0.3, n_genes=100)
        >>> data.X.shape, data.class_counts()["case"]
        ((300, 100), 90)
    """
    _check_arguments(n_samples, n_studies, case_fraction, batch_shift_sd, batch_scale_sd, noise_sd)
    signature = make_disease_signature(n_genes, n_signature_genes, effect_size, signature_seed)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    sizes = _study_sizes(rng, n_samples, n_studies, study_size_concentration)
    study = np.repeat(np.arange(n_studies), sizes)
    y = _case_labels(rng, sizes, study, case_fraction, case_fraction_concentration)

    sd = signature.baseline_sd
    platform = rng.normal(0.0, 1.0, n_genes).astype(np.float32) * platform_shift_sd * sd
    offsets = rng.normal(0.0, 1.0, (n_studies, n_genes)).astype(np.float32) * batch_shift_sd * sd
    scales = np.exp(rng.normal(0.0, batch_scale_sd, (n_studies, n_genes))).astype(np.float32)
    values = rng.standard_normal((n_samples, n_genes), dtype=np.float32)
    values *= scales[study] * (noise_sd * sd)
    values += offsets[study]
    values += signature.baseline_mean + platform
    values += y[:, None].astype(np.float32) * signature.case_shift

    n_cases = int(y.sum())
    source = (
        f"SIMULATED {name} cohort (swarm_examples.cohort_simulator, not patient data): "
        f"{n_samples} samples, {n_studies} studies, {n_cases} {label_names[1]} "
        f"({100 * n_cases / n_samples:.1f} %), {n_genes} genes of which "
        f"{len(signature.signature_genes)} signature genes shifted {effect_size:g} SD; "
        f"batch shift {batch_shift_sd:g} SD, scale {batch_scale_sd:g}; seed {seed}, "
        f"signature seed {signature_seed}"
    )
    study_width = len(str(n_studies))
    sample_width = len(str(n_samples))
    study_ids = np.array([f"{name}-study{k + 1:0{study_width}d}" for k in range(n_studies)])
    return ExpressionData(
        X=values,
        y=y,
        sample_ids=np.array([f"{name}-{i + 1:0{sample_width}d}" for i in range(n_samples)]),
        gene_ids=signature.gene_ids,
        label_names=label_names,
        source=source,
        groups=study_ids[study],
    )


def simulate_a1(seed: int = 0, n_genes: int = DEFAULT_N_GENES) -> ExpressionData:
    """Simulate a cohort shaped like the paper's A1: AML vs other samples.

    2,500 samples from 23 studies, 986 AML (39 %); A1 was measured on
    HG-U133A arrays, so it gets a small platform offset against A2.
    """
    return simulate_cohorts(
        n_samples=2500,
        n_studies=23,
        case_fraction=986 / 2500,
        n_genes=n_genes,
        platform_shift_sd=0.3,
        label_names=("other", "AML"),
        name="A1",
        seed=seed,
    )


def simulate_a2(seed: int = 0, n_genes: int = DEFAULT_N_GENES) -> ExpressionData:
    """Simulate a cohort shaped like the paper's A2: AML vs other samples.

    8,348 samples from 64 studies, 2,588 AML (31 %), HG-U133 Plus 2.0 (the
    reference platform: no platform offset).
    """
    return simulate_cohorts(
        n_samples=8348,
        n_studies=64,
        case_fraction=2588 / 8348,
        n_genes=n_genes,
        label_names=("other", "AML"),
        name="A2",
        seed=seed,
    )


def simulate_a3(seed: int = 0, n_genes: int = DEFAULT_N_GENES) -> ExpressionData:
    """Simulate a cohort shaped like the paper's A3: AML vs other samples.

    1,181 samples from 23 studies, 508 AML (43 %); A3 is RNA-seq, so it gets
    a large platform offset against the array cohorts.
    """
    return simulate_cohorts(
        n_samples=1181,
        n_studies=23,
        case_fraction=508 / 1181,
        n_genes=n_genes,
        platform_shift_sd=1.0,
        label_names=("other", "AML"),
        name="A3",
        seed=seed,
    )


def simulate_a1_a2_a3(seed: int = 0, n_genes: int = DEFAULT_N_GENES) -> ExpressionData:
    """Pool the simulated A1, A2 and A3 cohorts for scenario ``"2F"``.

    12,029 samples; ``groups`` is ``"A1"``, ``"A2"`` or ``"A3"`` (the data
    set), which is what scenario 2F puts one per node.
    """
    pooled = concatenate_datasets(
        {
            "A1": simulate_a1(seed, n_genes),
            "A2": simulate_a2(seed, n_genes),
            "A3": simulate_a3(seed, n_genes),
        }
    )
    return replace(
        pooled,
        source=(
            f"SIMULATED pool of the A1, A2 and A3 cohorts (not patient data; seed {seed}): "
            f"{pooled.n_samples} samples, groups = data set"
        ),
    )


# The paper's COVID-19 data sets: samples and COVID-19 cases. The number of
# studies is not in our notes; 8 is an assumption.
COVID_DATASETS = {"D": (2143, 134), "E": (2400, 296)}


def simulate_covid(
    dataset: str = "E", seed: int = 0, n_genes: int = DEFAULT_N_GENES, n_studies: int = 8
) -> ExpressionData:
    """Simulate a cohort shaped like the paper's COVID-19 set D or E.

    D: 2,143 samples, 134 COVID-19 (6 %); E: 2,400 samples, 296 COVID-19
    (12 %). Controls are other blood transcriptomes. The paper's number of
    studies is not used here (8 by default is an assumption).

    Raises:
        ValueError: `dataset` is not ``"D"`` or ``"E"``.
    """
    if dataset not in COVID_DATASETS:
        raise ValueError(f"dataset={dataset!r}; pass one of {sorted(COVID_DATASETS)}")
    n_samples, n_cases = COVID_DATASETS[dataset]
    return simulate_cohorts(
        n_samples=n_samples,
        n_studies=n_studies,
        case_fraction=n_cases / n_samples,
        n_genes=n_genes,
        label_names=("control", "COVID-19"),
        name=f"COVID-{dataset}",
        seed=seed,
    )


def _check_arguments(
    n_samples: int,
    n_studies: int,
    case_fraction: float | Sequence[float],
    batch_shift_sd: float,
    batch_scale_sd: float,
    noise_sd: float,
) -> None:
    """Fail on arguments that cannot make a cohort, saying what to pass."""
    if n_studies < 1:
        raise ValueError(f"n_studies={n_studies}; pass at least 1")
    if n_samples < 2 * n_studies:
        raise ValueError(
            f"n_samples={n_samples} is too few for {n_studies} studies; pass at least {2 * n_studies} (2 per study)"
        )
    fractions = np.atleast_1d(np.asarray(case_fraction, dtype=np.float64))
    if fractions.size not in (1, n_studies):
        raise ValueError(f"case_fraction has {fractions.size} values; pass one, or one per study ({n_studies})")
    if ((fractions < 0) | (fractions > 1)).any():
        raise ValueError(f"case_fraction={case_fraction}; pass values between 0 and 1")
    for label, value in (
        ("batch_shift_sd", batch_shift_sd),
        ("batch_scale_sd", batch_scale_sd),
        ("noise_sd", noise_sd),
    ):
        if value < 0:
            raise ValueError(f"{label}={value}; pass a value >= 0")


def _study_sizes(rng: np.random.Generator, n_samples: int, n_studies: int, concentration: float) -> np.ndarray:
    """Split `n_samples` into uneven study sizes of at least 2 each."""
    floor = 2
    weights = rng.dirichlet(np.full(n_studies, concentration))
    return floor + largest_remainder(weights, n_samples - floor * n_studies)


def _case_labels(
    rng: np.random.Generator,
    sizes: np.ndarray,
    study: np.ndarray,
    case_fraction: float | Sequence[float],
    concentration: float,
) -> np.ndarray:
    """Return 0/1 labels: exact totals, uneven shares across studies."""
    n_samples = int(sizes.sum())
    fractions = np.atleast_1d(np.asarray(case_fraction, dtype=np.float64))
    y = np.zeros(n_samples, np.int64)
    if fractions.size > 1 or len(sizes) == 1:
        start = 0
        for size, fraction in zip(sizes.tolist(), np.broadcast_to(fractions, sizes.shape), strict=True):
            chosen = rng.choice(size, round(float(fraction) * size), replace=False)
            y[start + chosen] = 1
            start += size
        return y
    fraction = float(fractions[0])
    n_cases = round(fraction * n_samples)
    if n_cases in (0, n_samples):
        y[:] = int(n_cases == n_samples)
        return y
    share = rng.beta(concentration * fraction, concentration * (1 - fraction), len(sizes))
    share = np.clip(share, 0.005, 0.995)
    odds = (share / (1 - share))[study]
    chosen = rng.choice(n_samples, n_cases, replace=False, p=odds / odds.sum())
    y[chosen] = 1
    return y
