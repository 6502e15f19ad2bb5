"""The package layout holds: the service never imports the callback's package, and the shared parts stay shared.

The imports are read from the source with ``ast`` (nothing is imported), so a
forbidden import in a function body or a rarely taken branch is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def imported_modules(package: str) -> dict[str, set[str]]:
    """Every module each file of ``package`` imports (absolute names), by file."""
    out: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path}: relative import; the project imports absolutely"
                names.add(node.module or "")
        out[str(path.relative_to(REPO))] = names
    return out


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    """``file imports module`` for every import in ``package`` of a module in (or under) ``forbidden``."""
    return [
        f"{file} imports {name}"
        for file, names in imported_modules(package).items()
        for name in sorted(names)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]


def test_the_scan_sees_imports():
    # The check below can fail: the callback's package does import swarm_wire and Keras.
    assert offenders("swarm_keras", ("swarm_wire",))
    assert any("keras" in names for names in imported_modules("swarm_keras").values())


def test_the_service_does_not_import_the_callback_package():
    assert offenders("sn_service", ("swarm_keras", "keras")) == []


def test_the_shared_package_imports_neither_side_nor_a_framework():
    assert offenders("swarm_wire", ("swarm_keras", "sn_service", "keras", "tensorflow", "fastapi", "httpx")) == []


def test_the_http_routers_do_not_import_the_command_line_tools():
    assert offenders("sn_service/http", ("sn_service.cli",)) == []


def test_the_callback_package_still_offers_the_wire_format_under_its_old_names():
    from swarm_keras import options as old_options
    from swarm_keras import serialization as old
    from swarm_wire import options, serialization

    assert old.to_bytes is serialization.to_bytes and old.from_bytes is serialization.from_bytes
    assert old.WeightsFormatError is serialization.WeightsFormatError and old.FORMAT == serialization.FORMAT
    assert old_options.MERGE_METHODS is options.MERGE_METHODS
