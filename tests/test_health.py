"""`/health` (liveness, with the models' warmth) and `/health/ready` (readiness for a load
balancer), in-process and on the real `manage.py serve`, started as a user does: `PORT=... serve`."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import LiveParley, free_port

STATES = {"cold", "loading", "warm", "failed"}


def test_health_is_liveness_and_says_how_warm_each_model_is(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["models"]) == {"chat", "embedding", "redaction"}
    assert set(body["models"].values()) <= STATES


def test_readiness_without_a_warm_up_is_ready(client):
    """runserver, tests and `serve --no-warmup` load models on first use: nothing to wait for."""
    response = client.get("/health/ready")
    assert response.status_code == 200 and response.json()["ready"] is True


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class PortFromEnvironment(LiveParley):
    """`serve` with no --port: PORT in the environment decides, as ARCHITECTURE.md says."""

    def start(self):
        import subprocess
        import sys

        from tests.conftest import REPO

        self.env["PORT"] = str(self.port)
        self.log = open(self.data_dir / self.log_name, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--no-worker"],
            cwd=REPO,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self


@pytest.fixture(scope="module")
def warming_server(tmp_path_factory):
    """A fresh `serve` polled from its first moment: every /health/ready answer it gave, in order,
    with /health's model states at that moment."""
    server = PortFromEnvironment(tmp_path_factory.mktemp("health"), free_port())
    server.migrate()
    server.start()
    seen: list[tuple[int, dict, dict]] = []
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"serve exited early:\n{server.read_log()}")
            try:
                live_status, live = _get(f"{server.url}/health")
                status, ready = _get(f"{server.url}/health/ready")
            except (OSError, ValueError):
                time.sleep(0.2)
                continue
            seen.append((status, ready, live))
            if status == 200:
                break
            time.sleep(0.2)
        yield server, seen
    finally:
        server.stop()


@pytest.mark.slow
def test_serve_listens_on_the_port_named_by_PORT(warming_server):
    server, seen = warming_server
    assert seen, f"nothing answered on PORT={server.port}:\n{server.read_log()[-2000:]}"
    assert f":{server.port}/" in server.read_log()


@pytest.mark.slow
def test_readiness_is_503_until_serve_has_warmed_the_models_then_200(warming_server):
    server, seen = warming_server
    statuses = [status for status, _, _ in seen]
    assert statuses[-1] == 200, server.read_log()[-2000:]
    assert statuses[0] == 503  # the first visitor is not sent to a cold server
    assert statuses == sorted(statuses, reverse=True)  # never ready, then not ready again
    for status, ready, live in seen:
        assert live["status"] == "ok"  # liveness all along: a warming server is not a dead one
        assert ready["ready"] is (status == 200)
        if status == 503:
            assert "loading" in ready["models"].values() or "cold" in ready["models"].values()
    assert seen[-1][1]["models"] == {"chat": "warm", "embedding": "warm", "redaction": "warm"}
