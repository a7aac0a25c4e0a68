#!/bin/sh
# Worker container. QUEUES: "inference" (live frames) and/or "default" (reports).
set -e
exec celery -A engagement worker \
  -Q "${QUEUES:-inference,default}" \
  --concurrency "${WORKER_CONCURRENCY:-2}" \
  --prefetch-multiplier 1 \
  --without-gossip --without-mingle \
  --loglevel "${LOG_LEVEL:-INFO}"
