# One line each for the README's two commands; everything installs into .venv / .venv-tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
BROWSER := /usr/bin/chromium
SAM := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 $(TOOLS)/bin/sam

.PHONY: run test test-fast screenshots lint typecheck template-check bench soak clean build-DispatcherFunction build-SweeperFunction build-WebhookFunction build-SesEventsFunction

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(TOOLS_STAMP): tools-requirements.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/bin/python -m pip install --quiet -r tools-requirements.txt
	touch $(TOOLS_STAMP)

## run: the whole service on this machine (DynamoDB with streams, sandbox, poller, sweeper),
## with sample rows; Ctrl-C stops it
run: $(STAMP)
	@$(BIN)/dispatcher dev --demo

## test: lint, type-check, check the template, then the whole test suite, a process per core,
## each taking whole test files (the console's browser tests in Debian's chromium, installed
## here when missing: apt needs root)
test: lint typecheck template-check $(BROWSER)
	$(BIN)/pytest -n auto --dist loadfile

## test-fast: lint, type-check, the unit and functional tiers (under a minute); no servers
test-fast: lint typecheck
	$(BIN)/pytest -m "not slow"

## bench: throughput against the sandbox's rate limit, cost per mail, import time, memory
bench: $(STAMP)
	$(BIN)/python bench/bench.py

## soak: the fault suite's big run at 10,000 rows (28 minutes on a 2-core machine)
soak: $(STAMP)
	FAULT_ROWS=10000 $(BIN)/pytest tests/fault -k thousands

$(BROWSER):
	@if [ "$$(id -u)" != 0 ]; then \
		echo "the console's browser tests need Debian's chromium: run" \
			"'sudo apt-get install -y chromium chromium-driver' (or make test as root)" >&2; \
		exit 1; \
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
		|| (apt-get update -q >/dev/null && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null)

## screenshots: refresh the README's console screenshots from the browser tests
screenshots: $(STAMP) $(BROWSER)
	UPDATE_SCREENSHOTS=1 $(BIN)/pytest tests/e2e/test_console_browser.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy dispatcher

## template-check: sam validate --lint, cfn-lint with Serverless Rules, checkov, and the
## sample stream event still matching what `sam local generate-event` makes
template-check: $(TOOLS_STAMP)
	$(SAM) validate --lint -t template.yaml
	$(TOOLS)/bin/cfn-lint template.yaml --append-rules cfn_lint_serverless.rules
	$(TOOLS)/bin/checkov -f template.yaml --quiet --compact --skip-download
	$(SAM) local generate-event dynamodb update | diff -u tests/data/sam-dynamodb-update.json -

# `sam build` runs these (template Metadata: BuildMethod: makefile): the package and its
# Lambda dependencies only, as arm64 wheels for the python3.13 runtime, with bytecode compiled
# by a python3.13: /var/task is read-only, so without it every cold start compiles every
# module anew (2.3x the import time, `make bench`). Unchecked-hash .pyc files need no source
# timestamps, which a zip does not keep exactly. `make bench` builds the same for this
# machine (LAMBDA_WHEELS= RUNTIME_PYTHON=its own python).
LAMBDA_WHEELS ?= --platform manylinux2014_aarch64 --implementation cp --python-version 3.13 \
	--only-binary=:all:
RUNTIME_PYTHON ?= python3.13
build-DispatcherFunction build-SweeperFunction build-WebhookFunction build-SesEventsFunction:
	$(PYTHON) -m pip install --quiet --no-compile --target "$(ARTIFACTS_DIR)" \
		-r lambda-requirements.txt $(LAMBDA_WHEELS) --upgrade
	mkdir -p "$(ARTIFACTS_DIR)/dispatcher"
	cp -r dispatcher/. "$(ARTIFACTS_DIR)/dispatcher/"
	rm -rf "$(ARTIFACTS_DIR)/dispatcher/local" "$(ARTIFACTS_DIR)/dispatcher/console" \
		"$(ARTIFACTS_DIR)/dispatcher/cli.py" \
		"$(ARTIFACTS_DIR)/dispatcher/admin.py" "$(ARTIFACTS_DIR)/dispatcher/targets.py"
	find "$(ARTIFACTS_DIR)" -name __pycache__ -prune -exec rm -rf {} +
	@if $(RUNTIME_PYTHON) -c pass 2>/dev/null; then \
		$(RUNTIME_PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash \
			"$(ARTIFACTS_DIR)" >/dev/null; \
	else \
		echo "warning: $(RUNTIME_PYTHON) does not run here; the package ships without" \
			"bytecode (slower cold starts). Set RUNTIME_PYTHON=/path/to/python3.13." >&2; \
	fi

clean:
	rm -rf $(VENV) $(TOOLS) .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis
