# One entry point for developers, the demo and CI (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: help install demo test test-fast lint format worker web migrate clean services

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# albumentations (the ml extra) pulls opencv-python-headless, whose cv2/ folder overwrites the
	@# one of mediapipe's opencv-contrib-python (OpenCV 5 keeps CascadeClassifier in contrib):
	@# reinstall the contrib build last, at its resolved version, so cv2 is the full one.
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall \
		"opencv-contrib-python==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("opencv-contrib-python"))')"
	$(BIN)/python -c "import cv2; cv2.CascadeClassifier" || { echo "cv2 lacks CascadeClassifier: reinstall opencv-contrib-python"; exit 1; }
	touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

# The on-device analysis bundle (classroom/frontend/ -> build/ondevice/, esbuild from npm).
build/ondevice/ondevice.js: node_modules/.package-lock.json $(wildcard classroom/frontend/*.js)
	npm run --silent build

install: $(VENV)/.installed node_modules/.package-lock.json build/ondevice/ondevice.js  ## create the virtual environment, install Python and npm packages, build the front-end bundle

migrate: install  ## apply database migrations
	$(BIN)/python manage.py migrate --noinput

demo: migrate  ## run the whole system on this machine (SQLite, in-process worker) at http://127.0.0.1:8000
	$(BIN)/python manage.py setup_demo --url http://$(HOST):$(PORT)
	@# A demo is one teacher with a webcam or two: show figures for any group (the board says so).
	ENGAGEMENT_MIN_GROUP_SIZE=$${ENGAGEMENT_MIN_GROUP_SIZE:-1} $(BIN)/python manage.py runserver $(HOST):$(PORT)

services:  ## start local PostgreSQL and Redis for the tests (installs them with apt-get when root)
	@deploy/test-services.sh start

test: install  ## run every test: unit, slow, integration (PostgreSQL, Redis, Celery, Daphne) and browser
	@eval "$$(deploy/test-services.sh start)" && \
	  $(BIN)/ruff check . && $(BIN)/lint-imports && \
	  $(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install  ## unit tests only, on SQLite, no outside services
	$(BIN)/python -m pytest -m "not integration and not browser and not slow" $(PYTEST_ARGS)

lint: install  ## ruff and import-linter contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install  ## format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

web: install  ## production-mode web server (needs DATABASE_URL and REDIS_URL)
	$(BIN)/daphne -b $(HOST) -p $(PORT) engagement.asgi:application

worker: install  ## production-mode Celery worker for live frames and reports
	$(BIN)/celery -A engagement worker -Q inference,default --loglevel=INFO

beat: install  ## production-mode Celery beat: periodic tasks (retention); run exactly one
	$(BIN)/celery -A engagement beat --loglevel=INFO

.PHONY: loadtest beat
loadtest: install  ## production-mode load test on loopback, e.g. make loadtest ARGS="--students 30 --fps 1 --seconds 60"
	deploy/load-test.sh $(ARGS)

clean:  ## remove the virtual environment, node_modules and local state
	rm -rf $(VENV) node_modules var staticfiles build
