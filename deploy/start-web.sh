#!/bin/sh
# Web container: apply migrations, then serve HTTP and WebSockets with Daphne.
set -e
python manage.py migrate --noinput
exec daphne -b 0.0.0.0 -p "${PORT:-8000}" --proxy-headers engagement.asgi:application
