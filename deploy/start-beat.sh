#!/bin/sh
# Beat container: sends the periodic tasks of CELERY_BEAT_SCHEDULE (retention) to the queues.
# Exactly one beat per deployment. Its schedule file only records when each task last ran: a
# fresh container runs the (harmless, idempotent) retention task once at start.
set -e
exec celery -A engagement beat \
  --schedule "${BEAT_SCHEDULE_FILE:-/tmp/celerybeat-schedule}" \
  --loglevel "${LOG_LEVEL:-INFO}"
