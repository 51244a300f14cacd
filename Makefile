# Headwater: the two commands a newcomer needs are `make demo` and `make test` (see README).
PY := .venv/bin/python

.PHONY: install demo test test-fast up services down status bench soak help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

install:  ## create/update .venv and node_modules (quick when nothing changed)
	@bash scripts/bootstrap.sh

demo: install  ## start the embedded services and run the pipeline end to end on the provider stand-ins
	$(PY) scripts/demo.py

test: install  ## run the whole test suite against real Redis Stack, Azurite, Prefect and the stand-ins
	$(PY) -m pytest

test-fast: install  ## the suite without the slow tests
	$(PY) -m pytest -m "not slow"

up: install  ## the whole system until Ctrl-C: services, streamer, processors, Prefect worker + deployments, metrics, feature API
	$(PY) scripts/run_all.py

services: install  ## only the embedded services (Redis Stack, Azurite, Prefect, provider stand-ins), in the background
	$(PY) -m devstack up

down:  ## stop the embedded services
	$(PY) -m devstack down

status:  ## services and pipeline status
	$(PY) -m devstack status
	$(PY) -m headwater.status

MINUTES ?= 20
soak: install  ## soak and chaos: the whole system under a fault schedule for MINUTES (default 20); one JSON object
	$(PY) bench/soak.py --minutes $(MINUTES) --json

bench: install  ## run every benchmark (prints one JSON object each; the soak is `make soak`)
	@for b in bench/*.py; do [ "$$b" = bench/soak.py ] && continue; echo "== $$b"; $(PY) $$b --json; done
