from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from config.env import envbool, envchoice, envint, envlist, envsecret
from tests.conftest import REPO


def test_env_helpers_read_typed_values(monkeypatch, tmp_path):
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_INT", "42")
    monkeypatch.setenv("X_LIST", "a.example, b.example,,")
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    monkeypatch.setenv("X_SECRET_FILE", str(secret))
    assert envbool("X_BOOL", False) is True
    assert envint("X_INT", 1) == 42
    assert envlist("X_LIST", []) == ["a.example", "b.example"]
    assert envsecret("X_SECRET") == "from-file"
    assert envbool("X_UNSET", True) is True


@pytest.mark.parametrize(
    ("helper", "value"),
    [
        (lambda: envbool("X_BAD", False), "maybe"),
        (lambda: envint("X_BAD", 1), "12abc"),
        (lambda: envint("X_BAD", 1, minimum=5), "2"),
        (lambda: envchoice("X_BAD", "a", ("a", "b")), "c"),
    ],
)
def test_env_helpers_fail_loudly_on_bad_values(monkeypatch, helper, value):
    monkeypatch.setenv("X_BAD", value)
    with pytest.raises(ImproperlyConfigured, match="X_BAD"):
        helper()


def test_system_checks_pass():
    call_command("check")


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": "k7#Qz!" + "x9Lp2" * 12,
        "ALLOWED_HOSTS": "parley.example.com",
        "PARLEY_DATA_DIR": str(tmp_path),
    }
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_bad_setting_stops_start_up_with_a_clear_message(tmp_path):
    env = {**os.environ, "DEBUG": "perhaps", "PARLEY_DATA_DIR": str(tmp_path)}
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr


def test_a_fresh_install_gets_its_own_secret_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "SECRET_KEY_FILE")}
    env["PARLEY_DATA_DIR"] = str(tmp_path)
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    first = _manage("shell", "-c", code, env=env).stdout.strip()
    second = _manage("shell", "-c", code, env=env).stdout.strip()
    assert len(first) >= 50 and first == second
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
