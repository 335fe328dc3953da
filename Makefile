# One entry point for people and CI. `make test` is what CI runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test unit integration template e2e browser-test lint build validate bench bench-large bench-parquet demo local samples clean

UV_VERSION := 0.13.8

# uv installs the lock file in parallel: about 20 s on a fresh machine where pip
# takes 2.5 minutes, which is most of `make demo`'s first-run time. pip only
# fetches uv itself. `uv pip sync` makes the venv exactly the lock, nothing more.
# --compile-bytecode (+30 s once): uv skips it by default, and where
# PYTHONDONTWRITEBYTECODE is set every later command would re-compile pandas and
# scipy on import (9 s for `modelwatch --help` instead of 3 s).
$(STAMP): requirements/dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements/dev.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Two pytest-xdist workers: much of the suite waits on subprocesses (sam, make, moto
# servers), so two workers on two cores took tests/unit + tests/e2e from 220 s to 122 s.
# loadgroup keeps the tests that share an expensive fixture on one worker (tests/conftest.py).
# PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

test: $(STAMP) lint
	$(PYTEST) -m "not browser" --cov --cov-report=term:skip-covered

unit: $(STAMP)
	$(PYTEST) -m unit

integration: $(STAMP)
	$(PYTEST) -m integration

template: $(STAMP)
	$(PYTEST) -m template

e2e: $(STAMP)
	$(PYTEST) -m e2e

# report.html in a real browser: Debian's chromium, headless, installed with apt-get when
# absent (as root, as CI runs). On the 2-core build machine: install 34 s, test about 90 s.
# The screenshot stays in out/browser-test/.
browser-test: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium (headless) with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium fonts-dejavu-core >/dev/null; }
	$(BIN)/pytest -n 0 -m browser tests/browser

lint: $(STAMP)
	$(BIN)/ruff check src functions tests scripts
	$(BIN)/ruff format --check src functions tests scripts
	$(BIN)/mypy src/modelwatch functions/batch_monitor/app.py functions/actuals_loader/app.py \
		functions/alert_notifier/app.py functions/label_join/app.py functions/retrain/app.py

validate: $(STAMP)
	SAM_CLI_TELEMETRY=$${SAM_CLI_TELEMETRY:-0} PATH=$(abspath $(BIN)):$$PATH $(BIN)/sam validate --lint

# The sample model only when the model layer has none: `make model` alone would also
# replace a model someone packaged there whenever the sample's inputs are newer.
# Metrics and alarms use the template's ModelName, not the name in the model's
# metadata.json, so `model check` fails the build when the two differ (and when the model
# can never publish the QualityMetric QualityAlarm watches).
build: $(STAMP)
	@if [ -z "$$MODEL_ARTIFACT_DIR" ] && [ ! -f layers/model/artifact/metadata.json ]; then \
		echo "layers/model/artifact holds no model: training the sample churn model into it"; \
		echo "(to deploy your own, see layers/model/README.md)"; \
		$(MAKE) --no-print-directory model || exit 1; \
	fi
	$(BIN)/modelwatch model check --template template.yaml --model-dir "$${MODEL_ARTIFACT_DIR:-layers/model/artifact}"
	SAM_CLI_TELEMETRY=$${SAM_CLI_TELEMETRY:-0} PATH=$(abspath $(BIN)):$$PATH $(BIN)/sam build

# make cannot take `make bench --large` (an option of make's own): `make bench ARGS=--large`
# or `make bench-large` (the 16-million-row, ~1 GB batch; out/bench/ keeps the file).
bench: $(STAMP)
	$(BIN)/python scripts/bench.py $(ARGS)

bench-large: $(STAMP)
	$(BIN)/python scripts/bench.py --large-only --large

# The Parquet reader's size in the runtime layer and its speed, fastparquet vs pyarrow.
bench-parquet: $(STAMP)
	$(BIN)/python scripts/bench_parquet.py

samples: $(STAMP)
	$(BIN)/python scripts/generate_samples.py

demo: $(STAMP)
	$(BIN)/modelwatch demo

local: $(STAMP)
	$(BIN)/modelwatch local up

clean:
	rm -rf .aws-sam .pytest_cache .ruff_cache .coverage out

# The sample churn model in the model layer's directory, rebuilt only when the training
# data or the code that shapes the model directory changed. metadata.json is written
# last, so an interrupted build is redone on the next run.
SAMPLE_MODEL_DIR := layers/model/artifact
.PHONY: model
model: $(SAMPLE_MODEL_DIR)/metadata.json

$(SAMPLE_MODEL_DIR)/metadata.json: $(STAMP) samplefiles/classification/train.csv $(wildcard src/modelwatch/modeling/*.py) $(wildcard src/modelwatch/drift/*.py) src/modelwatch/metrics.py
	$(BIN)/modelwatch model build --train samplefiles/classification/train.csv --target churned \
		--name churn-classifier --out $(SAMPLE_MODEL_DIR)
