"""Real clinical expression data sets, read from Debian's Bioconductor packages.

Three public data sets can be had on any Debian or Ubuntu machine without R:

- `load_golub`: Golub et al. 1999 leukaemia training set, AML vs ALL
  (38 samples x 3,051 genes). So easy that every site scores AUC 1.0.
- `load_all_bcr_abl`: adult ALL (Chiaretti et al. 2004), BCR/ABL fusion vs
  no known molecular abnormality (111 samples x 12,625 probe sets).
- `load_influenza`: whole blood of 17 volunteers challenged with influenza
  H3N2 (GEO GSE30550), symptomatic vs asymptomatic, late time points.

Each loader fetches one file with `fetch_debian_data_file` (apt-get download,
dpkg -x, sha256 check, cache) and reads the R data with the ``rdata``
package. The loaders for a site's own CSV/TSV files, `load_expression_matrix`
and `align_gene_sets`, are re-exported here so one import serves a script.
"""

from __future__ import annotations

import warnings
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from swarm_examples.debian_packages import (
    PROGRESS_PREFIX,
    ChecksumMismatchError,
    DatasetUnavailableError,
    DebianDataFile,
    fetch_debian_data_file,
)
from swarm_examples.expression_data import (
    DataFileError,
    ExpressionData,
    GeneSetMismatchError,
    align_gene_sets,
)
from swarm_examples.expression_files import load_expression_matrix

__all__ = [
    "ALL_FILE",
    "FLU_FILE",
    "GOLUB_FILE",
    "ChecksumMismatchError",
    "DataFileError",
    "DatasetUnavailableError",
    "ExpressionData",
    "GeneSetMismatchError",
    "align_gene_sets",
    "load_all_bcr_abl",
    "load_expression_matrix",
    "load_golub",
    "load_influenza",
    "read_r_data",
]

# The sha256 values below are those of the files in Debian bookworm's
# r-bioc-multtest 2.54.0-1, r-bioc-all 1.40.0-1 and r-bioc-qusage 2.32.0-1.
GOLUB_FILE = DebianDataFile(
    package="r-bioc-multtest",
    path="multtest/data/golub.RData",
    sha256="c49407449272725e6e02ef5f609115ee1f6854e8b19d7f477625af012a8e3e47",
    bioconductor="multtest",
    elsewhere="the training set of Golub et al., Science 286:531 (1999)",
)
ALL_FILE = DebianDataFile(
    package="r-bioc-all",
    path="ALL/data/ALL.rda",
    sha256="ed394602065429adb06d2701924c91ee565921bfb4b0e85f80192767fcad51ae",
    bioconductor="ALL",
    elsewhere="from Chiaretti et al., Blood 103:2771 (2004)",
)
FLU_FILE = DebianDataFile(
    package="r-bioc-qusage",
    path="qusage/data/fluExample.RData",
    sha256="606e9f9a97111799290df5be4328239f1ce7430bd75f5ca29d324f0ec82ca1ba",
    bioconductor="qusage",
    elsewhere="GEO series GSE30550 (Huang et al., PLoS Genetics 7:e1002234, 2011)",
)


def load_golub(root: Path | None = None, verbose: bool = True) -> ExpressionData:
    """Load Golub's leukaemia training set: AML (1) vs ALL (0).

    38 bone-marrow samples (27 ALL, 11 AML) x 3,051 genes, preprocessed
    as in Dudoit et al. 2002 (thresholded, filtered, log10, standardised per
    sample) as shipped in Bioconductor's multtest. Gene ids are Affymetrix Hu6800 probe ids; sample
    ids ``golub_train_01`` to ``golub_train_38`` follow the file's order.

    Args:
        root: cache folder; default ``$SWARM_DATA_DIR`` or
            ``~/.cache/swarm_keras/datasets``.
        verbose: print one line per slow step.

    Raises:
        DatasetUnavailableError: the Debian package cannot be fetched here.
        ChecksumMismatchError: the file is not the pinned one.
    """
    path = fetch_debian_data_file(GOLUB_FILE, root, verbose)
    objects = read_r_data(path)
    expression = np.asarray(objects["golub"], dtype=np.float64)  # genes x samples
    classes = np.asarray(objects["golub.cl"]).astype(np.int64)
    names = np.asarray(objects["golub.gnames"]).astype(str)
    n_genes, n_samples = expression.shape
    # golub.gnames is a genes x 3 character matrix (index, description,
    # probe id); rdata returns it flat in R's column-major order.
    probe_ids = names.reshape(3, n_genes)[2]
    return ExpressionData(
        X=expression.T,
        y=classes,
        sample_ids=np.array([f"golub_train_{i + 1:02d}" for i in range(n_samples)]),
        gene_ids=probe_ids,
        label_names=("ALL", "AML"),
        source=(
            "Golub et al. 1999 leukaemia training set, AML vs ALL (Bioconductor multtest, "
            "Debian package r-bioc-multtest)"
        ),
    )


def load_all_bcr_abl(root: Path | None = None, verbose: bool = True) -> ExpressionData:
    """Load adult ALL samples: BCR/ABL fusion (1) vs no known abnormality (0).

    The ALL ExpressionSet holds 128 patients (HG-U95Av2, RMA, log2) x 12,625
    probe sets. Its ``mol.biol`` field is NEG 74, BCR/ABL 37, ALL1/AF4 10,
    E2A/PBX1 5, NUP-98 1, p15/p16 1; only BCR/ABL and NEG samples are kept,
    111 in all. Sample ids are the patients' ids in the ExpressionSet.

    Args:
        root: cache folder; default ``$SWARM_DATA_DIR`` or
            ``~/.cache/swarm_keras/datasets``.
        verbose: print one line per slow step.

    Raises:
        DatasetUnavailableError: the Debian package cannot be fetched here.
        ChecksumMismatchError: the file is not the pinned one.
    """
    path = fetch_debian_data_file(ALL_FILE, root, verbose)
    if verbose:
        print(f"{PROGRESS_PREFIX} reading the ALL ExpressionSet (a few seconds)", flush=True)
    expression_set = read_r_data(path)["ALL"]
    exprs = _environment_entry(expression_set.assayData, "exprs")  # probes x patients
    pheno = vars(expression_set.phenoData)["data"]
    patients = np.asarray(exprs.coords[exprs.dims[1]].values).astype(str)
    probes = np.asarray(exprs.coords[exprs.dims[0]].values).astype(str)
    if list(pheno.index.astype(str)) != patients.tolist():
        raise DataFileError(
            f"{path}: phenoData rows do not match the expression columns; "
            "the file is not the ALL ExpressionSet this loader knows"
        )
    subtype = pheno["mol.biol"].astype(str).to_numpy()
    keep = np.isin(subtype, ["BCR/ABL", "NEG"])
    return ExpressionData(
        X=np.asarray(exprs.values, dtype=np.float64).T[keep],
        y=(subtype[keep] == "BCR/ABL").astype(np.int64),
        sample_ids=patients[keep],
        gene_ids=probes,
        label_names=("NEG", "BCR/ABL"),
        source=("Chiaretti et al. 2004 adult ALL, BCR/ABL vs NEG (Bioconductor ALL, Debian package r-bioc-all)"),
    )


def load_influenza(
    min_hours: float = 60.0,
    max_hours: float | None = None,
    root: Path | None = None,
    verbose: bool = True,
) -> ExpressionData:
    """Load the influenza H3N2 challenge: symptomatic (1) vs asymptomatic (0).

    Whole-blood expression (4,147 genes, gene symbols, log2) of 17 volunteers
    sampled at 15 time points from 0 to 108 hours after inoculation: 252
    samples (three time points are missing). Each subject has one outcome,
    ``Condition`` ``sx`` (9 subjects, 133 samples) or ``asx`` (8 subjects,
    119 samples); ``Hours`` is the time since inoculation.

    Before symptoms start, blood says little about the outcome (at 0 h it
    cannot), so by default only samples from 60 h on are kept: 119 samples
    (63 symptomatic, 56 asymptomatic), 7 per subject. ``groups`` holds the
    subject ids: samples of one subject are not independent, so splits that
    keep subjects together give honest scores.

    Args:
        min_hours: keep samples taken at or after this many hours.
        max_hours: keep samples taken at or before this many hours (None:
            no limit).
        root: cache folder; default ``$SWARM_DATA_DIR`` or
            ``~/.cache/swarm_keras/datasets``.
        verbose: print one line per slow step.

    Raises:
        ValueError: no sample lies in the requested time window.
        DatasetUnavailableError: the Debian package cannot be fetched here.
        ChecksumMismatchError: the file is not the pinned one.
    """
    path = fetch_debian_data_file(FLU_FILE, root, verbose)
    objects = read_r_data(path)
    expression = objects["eset.full"]  # genes x samples
    meta = objects["flu.meta"]
    samples = np.asarray(expression.coords[expression.dims[1]].values).astype(str)
    genes = np.asarray(expression.coords[expression.dims[0]].values).astype(str)
    if meta["SampleID"].astype(str).tolist() != samples.tolist():
        raise DataFileError(
            f"{path}: flu.meta rows do not match the expression columns; "
            "the file is not the fluExample this loader knows"
        )
    hours = meta["Hours.Numeric"].to_numpy(dtype=np.float64)
    keep = hours >= min_hours
    if max_hours is not None:
        keep &= hours <= max_hours
    if not keep.any():
        raise ValueError(
            f"no influenza sample lies between {min_hours} and {max_hours} hours; "
            f"samples were taken at {sorted(set(hours.tolist()))} hours"
        )
    window = f">= {min_hours:g} h" + ("" if max_hours is None else f" and <= {max_hours:g} h")
    return ExpressionData(
        X=np.asarray(expression.values, dtype=np.float64).T[keep],
        y=(meta["Condition"].astype(str).to_numpy()[keep] == "sx").astype(np.int64),
        sample_ids=samples[keep],
        gene_ids=genes,
        label_names=("asymptomatic", "symptomatic"),
        source=(
            f"influenza H3N2 challenge GSE30550, samples {window}, symptomatic vs "
            "asymptomatic (Bioconductor qusage fluExample, Debian package r-bioc-qusage)"
        ),
        groups=meta["Subject"].astype(str).to_numpy()[keep],
    )


def read_r_data(path: Path) -> dict[str, Any]:
    """Read an ``.RData``/``.rda`` file into Python objects with ``rdata``.

    Data frames become pandas DataFrames, matrices xarray DataArrays and S4
    objects (such as Bioconductor's ExpressionSet) SimpleNamespaces of their
    slots. Lazy R "promises" (unevaluated function arguments kept in saved
    environments; the ALL ExpressionSet carries two in a saved S4 method
    frame) cannot be converted; they are replaced by NULL first, which loses nothing we
    read. Warnings about R classes without a Python counterpart are silenced.
    """
    import rdata

    parsed = rdata.parser.parse_file(path)
    _drop_promises(parsed.object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return dict(rdata.conversion.convert(parsed))


def _drop_promises(root: Any) -> None:
    """Turn every PROM object under `root` into NULL, in place.

    The walk is iterative because R pairlists nest one level per element.
    """
    from rdata.parser import RObject, RObjectType

    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, RObject):
            if id(node) in seen:
                continue
            seen.add(id(node))
            if node.info.type == RObjectType.PROM:
                node.info = replace(node.info, type=RObjectType.NILVALUE, object=False, attributes=False, tag=False)
                node.value = None
                node.attributes = None
                node.tag = None
                continue
            stack.extend((node.value, node.attributes, node.tag, node.referenced_object))
        elif isinstance(node, list | tuple):
            stack.extend(node)
        elif is_dataclass(node) and not isinstance(node, type):
            stack.extend(getattr(node, field.name) for field in fields(node))


def _environment_entry(environment: Any, name: str) -> Any:
    """Return variable `name` of a converted R environment.

    ``rdata`` keeps an environment's variables either in its hash table (the
    mapping itself) or in its ``frame``, depending on how R saved it.
    """
    first_map = getattr(environment, "maps", [environment])[0]
    if name in first_map:
        return first_map[name]
    frame = getattr(environment, "frame", None)
    if frame and name in frame:
        return frame[name]
    raise KeyError(f"R environment has no variable {name!r}")
