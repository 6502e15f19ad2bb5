"""COVID-19 use case: scenario 4B, each node alone vs the swarm vs central training.

The paper's scenario 4B: three nodes with 20/80, 10/90 and 5/95 COVID-19
cases/controls, on a SIMULATED cohort shaped like its COVID-19 data set E
(2,400 blood transcriptomes, 296 COVID-19; no COVID-19 transcriptome can be
had here, so the simulation is labelled SIMULATED everywhere). Each node
trains the paper's dense classifier alone, one model trains on the pooled
data, and the nodes train together as a swarm of real processes. All are
scored on the pooled test set.

    python examples/covid/run.py                          # 1 permutation
    python examples/covid/run.py --data influenza --permutations 10

``--data influenza`` is real: whole blood of 17 volunteers challenged with
influenza H3N2 (GSE30550, from Debian's r-bioc-qusage), symptomatic vs
asymptomatic from 60 h on. Samples of one subject stay together: each node
holds whole subjects and holds out whole subjects for testing (scenario 2D
with subjects as groups), so no subject is both trained and tested on.
See README.md in this folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

from swarm_examples.evaluation import TrainingSettings
from swarm_examples.example_cli import DataChoice, main


def _simulated_covid(seed: int):
    from swarm_examples.cohort_simulator import simulate_covid

    return simulate_covid("E", seed=seed)


def _influenza(seed: int):
    from swarm_examples.datasets import load_influenza

    return load_influenza()


CHOICES = {
    "simulated-covid": DataChoice(
        load=_simulated_covid,
        description="SIMULATED cohort shaped like the paper's COVID-19 set E (2,400 samples, 296 cases)",
        scenario="4B",
        settings=TrainingSettings(epochs=10, batch_size=64, merges_per_epoch=5),
        simulated=True,
    ),
    "influenza": DataChoice(
        load=_influenza,
        description="real: influenza H3N2 challenge, symptomatic vs asymptomatic, 119 samples of 17 subjects",
        scenario="2D",
        settings=TrainingSettings(epochs=30, batch_size=16, merges_per_epoch=1),
        split_options={"hold_out_whole_groups": True},
    ),
}

if __name__ == "__main__":
    sys.exit(
        main(
            sys.argv[1:],
            prog="examples/covid/run.py",
            description=(__doc__ or "").splitlines()[0],
            choices=CHOICES,
            default_data="simulated-covid",
            default_out=Path(".runs/covid"),
        )
    )
