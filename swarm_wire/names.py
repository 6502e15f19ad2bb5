"""The names that cross the wire: tasks and sites, metrics, blob digests (one pattern each)."""

import re

#: A task or site name: 1-64 letters, digits, ``.``, ``_`` or ``-``, starting with a letter or digit.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
NAME_RE = re.compile(NAME_PATTERN)

#: A training metric's name as Keras logs it (``loss``, ``val_accuracy``): 1-64 of ``[A-Za-z0-9_.:/-]``.
METRIC_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,63}$"
METRIC_NAME_RE = re.compile(METRIC_NAME_PATTERN)
#: The most metrics one sync carries.
MAX_METRICS = 64

#: A sha256 hex digest: 64 lowercase hex characters (blob names, model fingerprints).
SHA256_PATTERN = r"^[0-9a-f]{64}$"
SHA256_RE = re.compile(SHA256_PATTERN)
