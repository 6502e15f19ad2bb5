"""Data for the examples of the paper's use cases.

- `swarm_examples.datasets`: real expression data sets from Debian's
  Bioconductor packages, and a site's own CSV/TSV files.
- `swarm_examples.cohort_simulator`: simulated multi-study cohorts shaped
  like the paper's leukaemia (A1-A3) and COVID-19 data sets.
- `swarm_examples.scenarios`: the paper's node scenarios (2B, 2D, 2E, 2F,
  4B, even) as per-node train/test splits.

Only numpy is needed to import this package; reading files needs the
``examples`` extra (pandas, rdata).
"""

from swarm_examples.expression_data import (
    DataFileError,
    ExpressionData,
    GeneSetMismatchError,
    align_gene_sets,
    concatenate_datasets,
)

__all__ = [
    "DataFileError",
    "ExpressionData",
    "GeneSetMismatchError",
    "align_gene_sets",
    "concatenate_datasets",
]
