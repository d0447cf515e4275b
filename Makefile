# Two commands matter on a fresh machine:  `make run`  and  `make test`.
# Both create .venv (unless a virtualenv is already active) and install the project into it.

ifdef VIRTUAL_ENV
VENV := $(VIRTUAL_ENV)
else
VENV := .venv
endif
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test venv deps kafka-fetch kafka-up kafka-down bench evaluate sample route-check clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Debian tools the test suite runs for real: Prometheus (promtool) and Alertmanager (amtool).
deps:
	@if ! command -v promtool >/dev/null || ! command -v amtool >/dev/null; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    prometheus prometheus-alertmanager docker-compose >/dev/null; \
	fi
	@# The Debian packages start their daemons; the tests start their own on free ports.
	@-$(SUDO) systemctl stop prometheus prometheus-alertmanager >/dev/null 2>&1 || true

kafka-fetch:
	deploy/kafka/kafka.sh fetch

kafka-up:
	deploy/kafka/kafka.sh up

kafka-down:
	deploy/kafka/kafka.sh down

test: $(STAMP) deps kafka-fetch
	$(PY) -m pytest -q -rfEsxX --junitxml=.test-report.xml

run: $(STAMP)
	$(PY) -m ddetect.demo

# Benchmarks print ratios against a baseline measured in the same run.
bench: $(STAMP) kafka-fetch
	$(PY) bench/bench_core.py
	$(PY) bench/bench_cusum_delay.py --runs 300
	$(PY) bench/bench_pipeline.py
	$(PY) bench/bench_ingest.py
	$(PY) bench/bench_detection.py

evaluate: $(STAMP)
	$(VENV)/bin/ddetect evaluate

# ~940k events of clean simulated traffic (6 h) for `ddetect replay`.
sample: $(STAMP)
	mkdir -p data && $(VENV)/bin/ddetect simulate --scenario clean --scale 2 --seed 1 --out data/clean-1M.jsonl

route-check: $(STAMP)
	$(VENV)/bin/ddetect route test --verify.receivers=email-ops,esp-contact category=technical severity=critical

clean:
	rm -rf .venv .pytest_cache .test-report.xml build *.egg-info
