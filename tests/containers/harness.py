"""The container test's sandbox: builds Parley's image and runs compose.yaml's stack with podman
on a machine that has no image registry and no container networking.

Everything peculiar to such a machine lives here, never in Containerfile or compose.yaml:
- the base image is built from Debian packages (`mmdebstrap`, then `podman import`) instead of
  pulled, with the host's locally added CA certificates (an intercepting proxy's) and PIP_CERT
  pointing at the bundle, so pip inside the build trusts what the host trusts;
- torch's wheel comes from the host's disk through a one-package index mounted into the build
  (`TORCH_INDEX_URL=file:///wheelhouse`), since download.pytorch.org is out of reach;
- podman runs with runc, the cgroupfs manager and no default ulimits (CONTAINERS_CONF pointing
  at a file written here), and every service on the host's network;
- PostgreSQL and Redis are the host's (a fresh database per run, two Redis database numbers)
  instead of compose.yaml's postgres and redis services, whose images cannot be pulled.
The last two are a copy of compose.yaml with those changes (Stack), run by podman-compose.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORKDIR = Path(os.environ.get("PARLEY_CONTAINERS_WORKDIR", "/var/tmp/parley-containers"))
BASE_IMAGE = "localhost/parley-base:bookworm"
IMAGE = "localhost/parley:containers-test"
DEBIAN_MIRROR = os.environ.get("PARLEY_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# The Redis databases the stack uses (test_scale_out.py uses 14 and 15): flushed at the start.
REDIS_DBS = (10, 11)
APP_SERVICES = ("migrate", "web", "worker", "beat", "inference")

CONTAINERS_CONF = """\
# Written by tests/containers/harness.py: how podman runs on these machines.
[containers]
default_ulimits = []
log_driver = "k8s-file"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
[engine.runtimes]
runc = ["/usr/sbin/runc"]
"""


class CommandFailed(subprocess.CalledProcessError):
    def __str__(self) -> str:  # the command's own words, not only its exit status
        return f"{super().__str__()}\n{((self.stdout or '') + (self.stderr or ''))[-4000:]}"


def run(*argv: str | Path, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "CONTAINERS_CONF": str(WORKDIR / "containers.conf")},
    )
    if check and result.returncode != 0:
        raise CommandFailed(result.returncode, result.args, result.stdout, result.stderr)
    return result


def podman(*args: str | Path, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    return run("podman", *args, timeout=timeout, check=check)


def why_podman_cannot_run() -> str | None:
    """None when podman can run a container here, else why not (the error text)."""
    for tool in ("podman", "mmdebstrap", "runc"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (`make test-containers` installs it with apt)"
    WORKDIR.mkdir(parents=True, exist_ok=True)
    (WORKDIR / "containers.conf").write_text(CONTAINERS_CONF)
    try:
        ensure_base_image()
        podman("run", "--rm", "--network", "host", BASE_IMAGE, "true", timeout=120)
    except CommandFailed as exc:
        return f"podman cannot run a container: {exc}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"podman cannot run a container: {exc}"
    return None


def ensure_base_image() -> None:
    """debian:bookworm-slim's stand-in, built from Debian's packages (once per machine)."""
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return
    tarball = WORKDIR / "bookworm.tar"
    hook = (
        'mkdir -p "$1/usr/local/share/ca-certificates" && '
        'for c in /usr/local/share/ca-certificates/*.crt; do [ -e "$c" ] && cp "$c" '
        '"$1/usr/local/share/ca-certificates/"; done; true'
    )
    run(
        "mmdebstrap", "--variant=minbase", "--format=tar",
        f"--customize-hook={hook}", "bookworm", tarball, DEBIAN_MIRROR,
        timeout=900,
    )  # fmt: skip
    podman("import", "--change", "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt", tarball, BASE_IMAGE)
    tarball.unlink()


def torch_wheelhouse() -> Path:
    """A one-package index (`torch/index.html` beside the wheel) for TORCH_INDEX_URL; pip finds
    the wheel on this machine's disk (its find-links)."""
    spec = "torch==2.13.0"
    house = WORKDIR / "wheelhouse"
    folder = house / "torch"
    if not list(folder.glob("torch-*.whl")):
        folder.mkdir(parents=True, exist_ok=True)
        run(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", folder, spec, timeout=900)
    links = "".join(f'<a href="{w.name}">{w.name}</a>\n' for w in sorted(folder.glob("torch-*.whl")))
    (folder / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")
    return house


def build_image() -> float:
    """Build Parley's image as a user would (Containerfile, repository as context) plus the
    sandbox's base and torch index; returns the seconds it took."""
    house = torch_wheelhouse()
    started = time.monotonic()
    result = run(
        "podman", "build",
        "--format", "docker",  # OCI images drop HEALTHCHECK; Docker's format keeps it
        "--network", "host",
        "--volume", f"{house}:/wheelhouse:ro",
        "--build-arg", f"BASE={BASE_IMAGE}",
        "--build-arg", "TORCH_INDEX_URL=file:///wheelhouse",
        "--file", REPO / "Containerfile",
        "--tag", IMAGE,
        REPO,
        timeout=1500, check=False,
    )  # fmt: skip
    (WORKDIR / "build.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"podman build failed:\n{(result.stdout + result.stderr)[-4000:]}")
    return time.monotonic() - started


def image_facts() -> dict:
    config = json.loads(podman("image", "inspect", IMAGE).stdout)[0]
    return {
        "size_bytes": config["Size"],
        "user": config["Config"].get("User"),
        "env": config["Config"].get("Env") or [],
        "healthcheck": (config.get("Healthcheck") or {}).get("Test"),
    }


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    """compose.yaml's services under podman-compose, in this machine's sandbox."""

    def __init__(self, database_url: str, redis: str, extra_env: dict[str, str] | None = None) -> None:
        self.project = f"parleytest{secrets.token_hex(3)}"
        self.web_port, self.inference_port, self.smtp_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.dir = WORKDIR / self.project
        self.dir.mkdir(parents=True)
        db_cache, db_broker = REDIS_DBS
        common = {
            "DATABASE_URL": database_url,
            "REDIS_URL": f"{redis}/{db_cache}",
            "CELERY_BROKER_URL": f"{redis}/{db_broker}",
            "CELERY_RESULT_BACKEND": f"{redis}/{db_broker}",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            **(extra_env or {}),
        }
        clients = {**common, "INFERENCE_URL": f"http://127.0.0.1:{self.inference_port}"}
        per_service = {
            "migrate": common,
            "web": {
                **clients,
                "PORT": str(self.web_port),
                "SMTP_INBOUND_PORT": str(self.smtp_port),
                "SMTP_INBOUND_HOST": "127.0.0.1",
            },
            "worker": clients,
            "beat": clients,
            "inference": {
                **common,
                "INFERENCE_PORT": str(self.inference_port),
                "HEALTHCHECK_URL": f"http://127.0.0.1:{self.inference_port}/health",
            },
        }
        # compose.yaml as users get it, changed only where this machine needs it: host networking
        # (no published ports), the host's PostgreSQL and Redis instead of the compose services,
        # and no restarts (a killed worker stays dead, so the test sees who finished its task).
        import yaml

        compose = yaml.safe_load((REPO / "compose.yaml").read_text())
        services = compose["services"]
        for name in ("postgres", "redis"):
            del services[name]
        for name, env in per_service.items():
            service = services[name]
            service["network_mode"] = "host"
            service.pop("ports", None)
            service["restart"] = "no"
            service["environment"] = {**service["environment"], **env}
            service["depends_on"] = {k: v for k, v in service.get("depends_on", {}).items() if k in services}
            service["build"]["context"] = str(REPO)
        self.compose_file = self.dir / "compose.sandbox.yaml"
        self.compose_file.write_text(json.dumps(compose, indent=1))
        # Interpolation values compose.yaml requires; the host's PostgreSQL ignores the password.
        self.env_file = self.dir / "sandbox.env"
        self.env_file.write_text(
            f"SECRET_KEY={secrets.token_urlsafe(40)}\nPOSTGRES_PASSWORD=unused-here\n"
            f"PARLEY_IMAGE={IMAGE}\nWORKER_CONCURRENCY=1\n"
        )

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        tool = Path(sys.executable).with_name("podman-compose")
        return run(
            tool if tool.exists() else "podman-compose",
            "--project-name", self.project,
            "--env-file", self.env_file,
            "--file", self.compose_file,
            *args,
            timeout=timeout, check=check,
        )  # fmt: skip

    def up(self, timeout: float = 420) -> dict[str, float]:
        """Start the stack; returns the seconds from `up` to web's and to the inference service's
        /health answering 200 (web answers before the models are loaded: its remote backends
        connect on first use)."""
        started = time.monotonic()
        result = self.compose("up", "--detach", "--no-build", timeout=timeout, check=False)
        (self.dir / "up.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"podman-compose up failed:\n{(result.stdout + result.stderr)[-4000:]}")
        self.wait_healthy(f"{self.url}/health", started + timeout)
        web = time.monotonic() - started
        self.wait_healthy(f"http://127.0.0.1:{self.inference_port}/health", started + timeout)
        return {"web": web, "inference": time.monotonic() - started}

    def wait_healthy(self, url: str, deadline: float) -> None:
        request = urllib.request.Request(url, headers={"X-Forwarded-Proto": "https"})  # as the TLS proxy
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310 - loopback
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(1)
        raise RuntimeError(f"{url} did not answer 200 in time:\n{self.logs()}")

    def containers(self, service: str) -> list[str]:
        names = podman(
            "ps", "--all",
            "--filter", f"label=io.podman.compose.project={self.project}",
            "--filter", f"label=com.docker.compose.service={service}",
            "--format", "{{.Names}}",
        ).stdout.split()  # fmt: skip
        return sorted(names)

    def exec(self, service: str, *argv: str, timeout: float = 300) -> str:
        return podman("exec", self.containers(service)[0], *argv, timeout=timeout).stdout

    def manage(self, service: str, *args: str, timeout: float = 300) -> str:
        return self.exec(service, "python", "manage.py", *args, timeout=timeout)

    def log(self, container: str) -> str:
        result = podman("logs", container, check=False)
        return result.stdout + result.stderr

    def logs(self, tail: int = 3000) -> str:
        parts = []
        for service in APP_SERVICES:
            for name in self.containers(service):
                parts.append(f"----- {name} -----\n{self.log(name)[-tail:]}")
        return "\n".join(parts)

    def down(self) -> None:
        (self.dir / "final.log").write_text(self.logs(tail=200_000))
        self.compose("down", "--volumes", "--timeout", "10", timeout=300, check=False)
