#!/bin/sh
# One image, several roles: the first argument names one (compose.yaml uses these); anything
# else runs as given, e.g. `python manage.py createsuperuser`.
set -eu
role="${1:-web}"
[ "$#" -gt 0 ] && shift
case "$role" in
  web)
    # HTTP, websockets and, with SMTP_INBOUND_PORT set, the inbound SMTP listener. The Celery
    # worker runs in its own containers (the `worker` role), hence --no-worker.
    exec python manage.py serve --host 0.0.0.0 --no-worker "$@" ;;
  worker)
    exec python -m celery -A config worker --loglevel=INFO --without-gossip --without-mingle "$@" ;;
  beat)
    # Exactly one per deployment: the schedule (desk sweep, mailbox polling, retention purge).
    mkdir -p "${PARLEY_DATA_DIR:-/data}/celery"
    exec python -m celery -A config beat --loglevel=INFO \
      --schedule="${PARLEY_DATA_DIR:-/data}/celery/beat-schedule" "$@" ;;
  inference)
    exec python manage.py inference_server --host 0.0.0.0 --port "${INFERENCE_PORT:-8100}" "$@" ;;
  migrate)
    # Run once before the others start (compose: `migrate` must complete first): the schema,
    # the static files, and the image's models registered as versions (instant when known).
    # Retried while the database starts: not every compose waits for its health check
    # (podman-compose ignores it with podman before 4.6).
    tries=0
    until python manage.py migrate --noinput; do
      tries=$((tries + 1))
      [ "$tries" -lt 30 ] || exit 1
      echo "migrate: database not ready, retrying in 2 s ($tries/30)" >&2
      sleep 2
    done
    python manage.py collectstatic --noinput --verbosity 0
    exec python manage.py prepare_models "$@" ;;
  *)
    exec "$role" "$@" ;;
esac
