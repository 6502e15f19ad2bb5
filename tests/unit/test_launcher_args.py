"""swarm-launch's command line: bad --env values are refused with what to pass instead."""

from __future__ import annotations

import pytest

from sn_service import launcher


@pytest.mark.parametrize("value", ["MAX_EPOCHS", "site-z:MAX_EPOCHS=1", "3X=1"])
def test_bad_env_is_refused_naming_the_value_and_the_form(tmp_path, capsys, value):
    script = tmp_path / "train.py"
    script.write_text("")
    assert launcher.main(["--sites", "2", "--env", value, str(script)]) == 2
    err = capsys.readouterr().err
    assert f"--env {value!r}" in err and "SITE:NAME=VALUE" in err and "site-a, site-b" in err
