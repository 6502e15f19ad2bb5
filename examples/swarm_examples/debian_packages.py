"""Fetch one data file out of a Debian package, without installing it.

Debian ships Bioconductor's data packages (``r-bioc-*``). ``apt-get install``
would pull in R and ~90 packages; we only want one file, so we run
``apt-get download`` into a temporary folder, unpack the ``.deb`` with
``dpkg -x``, check the file's sha256 against the value pinned in code, and
keep it in a cache folder. Later calls read the cache and never call apt.

The cache folder is ``$SWARM_DATA_DIR`` or ``~/.cache/swarm_keras/datasets``;
a file is kept at ``<cache>/<package>/<path inside the R library>``, which is
also where to put a copy made by other means (it is checksummed all the same).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Where Debian's R packages install their files, inside the .deb.
R_SITE_LIBRARY = Path("usr/lib/R/site-library")
DEFAULT_CACHE_DIR = Path("~/.cache/swarm_keras/datasets")
CACHE_DIR_VARIABLE = "SWARM_DATA_DIR"
PROGRESS_PREFIX = "swarm_examples.datasets:"

# `apt-get download` says one of these when its package lists lack the name.
_NOT_LOCATED = ("unable to locate package", "has no installation candidate", "no candidate")
# Set once this process ran `apt-get update`, so it runs at most once.
_APT_UPDATED: list[bool] = []


class DatasetUnavailableError(RuntimeError):
    """A data file cannot be fetched here; the message says how to get it."""


class ChecksumMismatchError(RuntimeError):
    """A data file's sha256 is not the pinned one; the message names the file."""


@dataclass(frozen=True)
class DebianDataFile:
    """One data file inside a Debian package, and where else it can be had.

    Args:
        package: the Debian package, e.g. ``"r-bioc-multtest"``.
        path: the file's path under ``usr/lib/R/site-library``, e.g.
            ``"multtest/data/golub.RData"``.
        sha256: the file's pinned sha256 (hex).
        bioconductor: the Bioconductor package that ships the same file.
        elsewhere: other origins in words (a GEO accession, a paper).
    """

    package: str
    path: str
    sha256: str
    bioconductor: str
    elsewhere: str = ""

    def where_else(self) -> str:
        """Say where the data can be had besides this Debian package."""
        text = (
            f"The same file is {self.path} in the Bioconductor package "
            f"'{self.bioconductor}' (in R: BiocManager::install('{self.bioconductor}'))"
        )
        if self.elsewhere:
            text += f"; the data are also {self.elsewhere}"
        return text + "."


def cache_dir() -> Path:
    """Return the cache folder: ``$SWARM_DATA_DIR`` or the default."""
    configured = os.environ.get(CACHE_DIR_VARIABLE)
    return Path(configured or DEFAULT_CACHE_DIR).expanduser()


def cached_path(data_file: DebianDataFile, root: Path | None = None) -> Path:
    """Return where `data_file` is (or will be) kept in the cache."""
    return (root or cache_dir()) / data_file.package / data_file.path


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of the file at `path`."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_debian_data_file(
    data_file: DebianDataFile,
    root: Path | None = None,
    verbose: bool = True,
    update_apt_lists: bool = True,
) -> Path:
    """Return a checksummed local copy of `data_file`, fetching it once.

    On a cache hit only the checksum is computed. On a miss the package is
    downloaded with ``apt-get download`` into a temporary folder (as root,
    if apt's lists do not know the package, ``apt-get update`` is run once,
    with a printed line), unpacked with ``dpkg -x``, and the file is
    checksummed before it is copied into the cache.

    Args:
        data_file: what to fetch.
        root: the cache folder; default `cache_dir()`.
        verbose: print one line per slow step.
        update_apt_lists: as root, run ``apt-get update`` (once per process)
            when apt does not know the package.

    Raises:
        DatasetUnavailableError: apt-get or dpkg is missing, or apt cannot
            find or download the package; the message says what to run and
            where else the data can be had.
        ChecksumMismatchError: the cached or the freshly unpacked file is
            not the pinned one; the message names the file and both digests.
    """
    target = cached_path(data_file, root)
    if target.exists():
        _verify(data_file, target, fix=f"Delete {target} to fetch it again.")
        return target

    _require_tools(data_file, target)
    with tempfile.TemporaryDirectory(prefix="swarm-deb-") as scratch:
        scratch_dir = Path(scratch)
        deb = _download(data_file, scratch_dir, target, verbose, update_apt_lists)
        if verbose:
            print(f"{PROGRESS_PREFIX} unpacking {deb.name} with dpkg -x", flush=True)
        unpacked = scratch_dir / "unpacked"
        _run(["dpkg", "-x", str(deb), str(unpacked)], data_file, "dpkg -x")
        extracted = unpacked / R_SITE_LIBRARY / data_file.path
        if not extracted.exists():
            raise DatasetUnavailableError(
                f"{deb.name} has no {R_SITE_LIBRARY / data_file.path}; Debian may have "
                f"moved the file. {data_file.where_else()} Put a copy at {target}."
            )
        _verify(
            data_file,
            extracted,
            fix=(
                f"It came from {deb.name}: Debian may have updated the package. Check "
                "the new file and update the pinned sha256 in examples/swarm_examples/datasets.py."
            ),
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        # Copy then rename, so a reader never sees half a file.
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(extracted, partial)
        partial.replace(target)
    if verbose:
        print(f"{PROGRESS_PREFIX} cached {data_file.path} at {target}", flush=True)
    return target


def _verify(data_file: DebianDataFile, path: Path, fix: str) -> None:
    """Fail unless `path` has the pinned sha256."""
    actual = sha256_of(path)
    if actual != data_file.sha256:
        raise ChecksumMismatchError(
            f"{path}: sha256 is {actual}, expected {data_file.sha256} "
            f"({data_file.path} from Debian package {data_file.package}). {fix}"
        )


def _require_tools(data_file: DebianDataFile, target: Path) -> None:
    """Fail clearly where apt-get or dpkg do not exist (not Debian/Ubuntu)."""
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise DatasetUnavailableError(
                f"'{tool}' is not on PATH, so Debian package {data_file.package} cannot be "
                f"fetched here (this needs Debian or Ubuntu; on those, run 'apt-get update' "
                f"as root once). {data_file.where_else()} Put a copy of the file at {target}."
            )


def _download(
    data_file: DebianDataFile, scratch_dir: Path, target: Path, verbose: bool, update_apt_lists: bool
) -> Path:
    """Run ``apt-get download`` in `scratch_dir` and return the .deb path."""
    if verbose:
        print(f"{PROGRESS_PREFIX} apt-get download {data_file.package}", flush=True)
    result = _apt_download(data_file.package, scratch_dir)
    may_update = update_apt_lists and _is_root() and not _APT_UPDATED
    if result.returncode != 0 and _not_located(result) and may_update:
        _APT_UPDATED.append(True)
        print(
            f"{PROGRESS_PREFIX} apt does not know {data_file.package} yet: running 'apt-get update' once",
            flush=True,
        )
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, check=False)
        result = _apt_download(data_file.package, scratch_dir)
    if result.returncode != 0:
        said = (result.stderr.strip() or result.stdout.strip()).splitlines()[-3:]
        if _not_located(result):
            advice = "apt's package lists do not have it: run 'apt-get update' as root, then try again"
        else:
            advice = "check the network access to the Debian archive, then try again"
        raise DatasetUnavailableError(
            f"'apt-get download {data_file.package}' failed ({' | '.join(said)}): {advice}. "
            f"{data_file.where_else()} Put a copy of the file at {target}."
        )
    debs = sorted(scratch_dir.glob(f"{data_file.package}_*.deb"))
    if not debs:
        raise DatasetUnavailableError(
            f"'apt-get download {data_file.package}' reported success but left no .deb in "
            f"{scratch_dir}. {data_file.where_else()}"
        )
    return debs[0]


def _apt_download(package: str, scratch_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run ``apt-get download PACKAGE`` with `scratch_dir` as working folder."""
    # As root apt warns that user _apt cannot write the 0700 scratch folder
    # and downloads as root instead; the warning is captured, not shown.
    return subprocess.run(
        ["apt-get", "download", package],
        cwd=scratch_dir,
        capture_output=True,
        text=True,
        check=False,
    )


def _not_located(result: subprocess.CompletedProcess[str]) -> bool:
    """Tell whether apt failed because its lists do not know the package."""
    said = (result.stderr + result.stdout).lower()
    return any(phrase in said for phrase in _NOT_LOCATED)


def _is_root() -> bool:
    """Tell whether this process runs as root (may run apt-get update)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _run(command: list[str], data_file: DebianDataFile, what: str) -> None:
    """Run a helper command, turning a failure into a readable error."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DatasetUnavailableError(
            f"{what} failed for {data_file.package} ({result.stderr.strip()}). {data_file.where_else()}"
        )
