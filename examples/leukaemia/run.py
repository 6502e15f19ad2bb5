"""Leukaemia use case: AML vs the rest, each node alone vs the swarm vs central training.

The paper's scenario 2B on a simulated cohort shaped like its data set A2
(8,348 samples from 64 studies, 31 % AML; labelled SIMULATED everywhere):
node 1 small and balanced, node 2 about 1 % AML, node 3 about 70 % AML. Each
node trains the paper's dense classifier alone, one model trains on the
pooled data, and the three nodes train together as a swarm of real
processes (one swarm-network service and one training process per node,
sharing an embedded ledger). All are scored on the pooled test set.

    python examples/leukaemia/run.py                      # the demo: 1 permutation
    python examples/leukaemia/run.py --permutations 5     # mean ± SD over 5
    python examples/leukaemia/run.py --data bcr-abl --permutations 10   # real ALL data

Real data (from Debian's Bioconductor packages, fetched and cached on first
use): ``--data golub`` (Golub 1999, AML vs ALL, 38 samples: too easy to
tell the arms apart) and ``--data bcr-abl`` (Chiaretti 2004 adult ALL,
BCR/ABL vs NEG, 111 samples). See README.md in this folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

from swarm_examples.evaluation import TrainingSettings
from swarm_examples.example_cli import DataChoice, main


def _simulated_a2(seed: int):
    from swarm_examples.cohort_simulator import simulate_a2

    return simulate_a2(seed=seed)


def _simulated_a123(seed: int):
    from swarm_examples.cohort_simulator import simulate_a1_a2_a3

    return simulate_a1_a2_a3(seed=seed)


def _golub(seed: int):
    from swarm_examples.datasets import load_golub

    return load_golub()


def _bcr_abl(seed: int):
    from swarm_examples.datasets import load_all_bcr_abl

    return load_all_bcr_abl()


# Small real data sets get small batches so that every node takes some
# steps per epoch; every arm uses the same settings.
SMALL_DATA = TrainingSettings(epochs=30, batch_size=16, merges_per_epoch=1)

CHOICES = {
    "simulated-a2": DataChoice(
        load=_simulated_a2,
        description="SIMULATED cohort shaped like the paper's A2 (8,348 samples, 31 %% AML)",
        scenario="2B",
        settings=TrainingSettings(epochs=20, batch_size=128, merges_per_epoch=6),
        simulated=True,
    ),
    "simulated-a123": DataChoice(
        load=_simulated_a123,
        description="SIMULATED pool shaped like the paper's A1, A2 and A3 (12,029 samples; one data set per node "
        "in scenario 2F)",
        scenario="2F",
        settings=TrainingSettings(epochs=20, batch_size=128, merges_per_epoch=6),
        simulated=True,
    ),
    "golub": DataChoice(
        load=_golub,
        description="real: Golub 1999 AML vs ALL, 38 samples (too easy: every arm scores ~1)",
        scenario="2B",
        settings=SMALL_DATA,
    ),
    "bcr-abl": DataChoice(
        load=_bcr_abl,
        description="real: Chiaretti 2004 adult ALL, BCR/ABL vs NEG, 111 samples",
        scenario="2B",
        settings=SMALL_DATA,
    ),
}

if __name__ == "__main__":
    sys.exit(
        main(
            sys.argv[1:],
            prog="examples/leukaemia/run.py",
            description=(__doc__ or "").splitlines()[0],
            choices=CHOICES,
            default_data="simulated-a2",
            default_out=Path(".runs/leukaemia"),
        )
    )
