"""The commands' lines: --version everywhere, one version string; swarm-launch refuses a bad --env."""

from __future__ import annotations

import tomllib
from importlib import import_module
from pathlib import Path

import pytest

import sn_service
import swarm_keras
from sn_service.cli import launcher

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "command, module",
    [
        ("swarm-sn", "sn_service.cli.swarm_sn"),
        ("swarm-launch", "sn_service.cli.launcher"),
        ("swarm-status", "sn_service.cli.swarm_status"),
        ("swarm-identity", "sn_service.cli.swarm_identity"),
    ],
)
def test_every_command_prints_the_one_version(command, module, capsys):
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[command] == f"{module}:main"
    with pytest.raises(SystemExit) as done:
        import_module(module).main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"{command} {version}"
    assert swarm_keras.__version__ == sn_service.__version__ == version


@pytest.mark.parametrize("value", ["MAX_EPOCHS", "site-z:MAX_EPOCHS=1", "3X=1"])
def test_bad_env_is_refused_naming_the_value_and_the_form(tmp_path, capsys, value):
    script = tmp_path / "train.py"
    script.write_text("")
    assert launcher.main(["--sites", "2", "--env", value, str(script)]) == 2
    err = capsys.readouterr().err
    assert f"--env {value!r}" in err and "SITE:NAME=VALUE" in err and "site-a, site-b" in err


def test_huge_pages_are_asked_for_only_while_a_task_has_big_blobs_and_numpy_takes_the_choice():
    import numpy as np

    from sn_service.service import huge_pages_wanted, set_huge_pages

    small, big = "f32[1817729]", "f32[50000000]"  # 6.9 MB and 200 MB blobs
    assert not huge_pages_wanted("auto", [small]) and not huge_pages_wanted("auto", [])
    assert huge_pages_wanted("auto", [small, big])
    assert huge_pages_wanted("on", [small]) and not huge_pages_wanted("off", [big])
    switch = np._core.multiarray._set_madvise_hugepage
    before = switch(True)
    try:
        assert set_huge_pages(False) and switch(True) is False  # the switch returns what it was
        assert set_huge_pages(True) and switch(True) is True
    finally:
        switch(before)
