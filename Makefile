# Two commands do all set-up on a fresh clone:
#   make demo   the weekly digest on the embedded default (SQLite, in-process tasks, .eml outbox)
#   make test   the test suite (needs local PostgreSQL and Redis; .ci/run starts them)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install axe vendor demo test test-fault lint format serve worker beat bench bench-email bench-subscribe bench-webhooks bench-votes bench-search soak chromium clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -m pip install --quiet -e ".[dev]" 2>&1 | grep -v -e "is ignored" -e "^ *$$" || true
	DIGEST_ENV=test $(BIN)/python -c "import digest, workers, schema, emails, celery, mjml, sendgrid, fastapi, playwright"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	DIGEST_ENV=development $(BIN)/digest demo

chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q chromium; }

AXE := tests/support/axe/node_modules/axe-core/axe.min.js

# axe-core for the accessibility tests: pinned in tests/support/axe/package-lock.json, installed
# from the npm registry, loaded by Playwright from these files (never from a CDN).
$(AXE): tests/support/axe/package.json tests/support/axe/package-lock.json
	cd tests/support/axe && npm ci --no-audit --no-fund --loglevel=error
	touch $(AXE)

axe: $(AXE)

test: $(STAMP) chromium $(AXE)
	$(BIN)/pytest $(PYTEST_ARGS)

test-fault: $(STAMP)
	$(BIN)/pytest -m fault $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

serve: $(STAMP)
	DIGEST_ENV=$${DIGEST_ENV:-development} $(BIN)/digest serve

worker: $(STAMP)
	DIGEST_ENV=$${DIGEST_ENV:-development} $(BIN)/celery -A workers worker --loglevel=INFO

beat: $(STAMP)
	DIGEST_ENV=$${DIGEST_ENV:-development} $(BIN)/celery -A workers beat --loglevel=INFO

bench: $(STAMP)
	$(BIN)/python -m bench.dispatch $(BENCH_ARGS)

bench-subscribe: $(STAMP)
	$(BIN)/python -m bench.subscribe $(BENCH_ARGS)

bench-email: $(STAMP)
	$(BIN)/python -m bench.email_size $(BENCH_ARGS)

bench-webhooks: $(STAMP)
	$(BIN)/python -m bench.webhooks $(BENCH_ARGS)

bench-votes: $(STAMP)
	$(BIN)/python -m bench.votes $(BENCH_ARGS)

bench-search: $(STAMP)
	$(BIN)/python -m bench.subscriber_search $(BENCH_ARGS)

soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf var test-artifacts .pytest_cache

# The console's vendored htmx and uPlot (digest/web/static/vendor/README.md): reproduce the committed files.
vendor:
	cd digest/web/static/vendor/npm && npm ci --no-audit --no-fund --loglevel=error
	cp digest/web/static/vendor/npm/node_modules/htmx.org/dist/htmx.min.js digest/web/static/vendor/htmx.min.js
	cp digest/web/static/vendor/npm/node_modules/htmx.org/LICENSE digest/web/static/vendor/htmx.LICENSE
	cp digest/web/static/vendor/npm/node_modules/uplot/dist/uPlot.iife.min.js digest/web/static/vendor/uplot.iife.min.js
	cp digest/web/static/vendor/npm/node_modules/uplot/dist/uPlot.min.css digest/web/static/vendor/uplot.min.css
	cp digest/web/static/vendor/npm/node_modules/uplot/LICENSE digest/web/static/vendor/uplot.LICENSE
	rm -rf digest/web/static/vendor/npm/node_modules
