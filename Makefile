# perceptlab — two commands do all the set-up: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEPS_STAMP := $(VENV)/.deps-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
# The platform is never installed (the wheel ships distortions and metric only): every target finds it here.
export PYTHONPATH := $(CURDIR)/platform:$(CURDIR)
export PERCEPTLAB_DATA_DIR ?= $(CURDIR)/var
# Integration tier: real services on loopback (override to point elsewhere).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/perceptlab
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(DEPS_STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=24" "setuptools>=68" wheel
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.deps-* && touch $@

install: $(DEPS_STAMP) ## create the virtualenv and install runtime + dev dependencies
	@# re-point the editable install at this checkout (cheap; matters when the venv is a shared cache)
	@$(PIP) install -q --no-deps --no-build-isolation -e . >/dev/null

run: install ## migrate, build the demo, serve web + workers + simulated crowd on 127.0.0.1:8000 (Ctrl-C stops all)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_setup
	$(PY) manage.py rundev

test: install lint ## lint, then the whole suite: unit (SQLite), integration (Postgres+Redis+worker), browser (chromium)
	$(PY) -m pytest -m "not integration and not browser" -q
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_REDIS_URL) CELERY_RESULT_BACKEND=$(TEST_REDIS_URL) \
	  $(PY) -m pytest -m "integration or browser" -q

test-fast: install ## unit tier only (SQLite, no services)
	$(PY) -m pytest -m "not integration and not browser and not slow" -q

lint: install ## ruff (lines of at most 110), the formatter's check, and the import-linter layer contracts
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

bench: install ## benchmarks (distortion engine, metric vs reference lpips, k-means science check, adaptive sampling, continuous training, new-study preview); writes docs/benchmarks.md
	@tmp=$$(mktemp -d) && export PERCEPTLAB_DATA_DIR=$$tmp PYTHONPATH=platform:. && \
	  $(PY) manage.py bench_distortions --out docs/benchmarks.md && \
	  $(PY) manage.py bench_preview --out docs/benchmarks.md && \
	  $(PY) manage.py bench_metric --out docs/benchmarks.md && \
	  $(PY) manage.py bench_kmeans --out docs/benchmarks.md && \
	  $(PY) manage.py bench_adaptive --out docs/benchmarks.md --plot docs/img/adaptive_curves.svg && \
	  $(PY) manage.py migrate -v0 && $(PY) manage.py bench_training --out docs/benchmarks.md; rc=$$?; rm -rf $$tmp; exit $$rc

bench-adaptive: install ## adaptive vs uniform sampling on a simulated crowd: learning curves, ranking resolution; writes docs/benchmarks.md and docs/img/adaptive_curves.svg
	PYTHONPATH=platform:. $(PY) manage.py bench_adaptive --out docs/benchmarks.md --plot docs/img/adaptive_curves.svg

bench-first-run: install ## time make run to its first page on an empty data dir (cold, warm) and the demo's milestones; writes docs/benchmarks.md
	$(PY) manage.py bench_first_run --out docs/benchmarks.md

contact-sheet: install ## docs/contact_sheet.png: every distortion at 5 severities
	$(PY) -m distortions contact-sheet docs/contact_sheet.png

clean: ## remove the local data dir (database, media, broker files)
	rm -rf var

LOAD_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/perceptlab_load
LOAD_CACHE_URL ?= redis://127.0.0.1:6379/15
loadtest: install ## load test: 200 simulated annotators vs gunicorn + Postgres + Redis, back to back and paced at 300/s (30 s each after a ramp); writes docs/benchmarks.md
	psql "$(dir $(LOAD_DATABASE_URL))postgres" -qc "DROP DATABASE IF EXISTS $(notdir $(LOAD_DATABASE_URL))" -c "CREATE DATABASE $(notdir $(LOAD_DATABASE_URL))"
	DATABASE_URL=$(LOAD_DATABASE_URL) PYTHONPATH=platform:. $(PY) manage.py migrate -v0
	DATABASE_URL=$(LOAD_DATABASE_URL) CACHE_URL=$(LOAD_CACHE_URL) DJANGO_SETTINGS_MODULE=devtools.settings_loadtest PYTHONPATH=platform:. \
	  $(PY) manage.py loadtest --clients $${CLIENTS:-200} --seconds $${SECONDS_:-30} --out docs/benchmarks.md

loadtest-instances: install ## load test: the back-to-back ceiling against 1 gunicorn instance, then 2 behind one address (round-robin balancer); writes docs/benchmarks.md
	psql "$(dir $(LOAD_DATABASE_URL))postgres" -qc "DROP DATABASE IF EXISTS $(notdir $(LOAD_DATABASE_URL))" -c "CREATE DATABASE $(notdir $(LOAD_DATABASE_URL))"
	DATABASE_URL=$(LOAD_DATABASE_URL) PYTHONPATH=platform:. $(PY) manage.py migrate -v0
	DATABASE_URL=$(LOAD_DATABASE_URL) CACHE_URL=$(LOAD_CACHE_URL) DJANGO_SETTINGS_MODULE=devtools.settings_loadtest PYTHONPATH=platform:. \
	  $(PY) manage.py loadtest --web-instances 2 --workers $${WORKERS:-1} --clients $${CLIENTS:-200} --seconds $${SECONDS_:-30} --out docs/benchmarks.md

loadtest-servers: install ## load test: the paced run against gunicorn (production) and granian in turn, 3 rounds: the web server's share of the CPU per judgment; writes docs/benchmarks.md
	psql "$(dir $(LOAD_DATABASE_URL))postgres" -qc "DROP DATABASE IF EXISTS $(notdir $(LOAD_DATABASE_URL))" -c "CREATE DATABASE $(notdir $(LOAD_DATABASE_URL))"
	DATABASE_URL=$(LOAD_DATABASE_URL) PYTHONPATH=platform:. $(PY) manage.py migrate -v0
	DATABASE_URL=$(LOAD_DATABASE_URL) CACHE_URL=$(LOAD_CACHE_URL) DJANGO_SETTINGS_MODULE=devtools.settings_loadtest PYTHONPATH=platform:. \
	  $(PY) manage.py loadtest --compare-servers $${ROUNDS:-3} --clients $${CLIENTS:-200} --seconds $${SECONDS_:-30} --out docs/benchmarks.md

loadtest-reference: install ## load test of the tree issue 19 measured (commit 9029131) and of this tree in turn, 2 rounds (about 9 min): today's web CPU per judgment estimated on the issue's slower Xeon VM; writes docs/benchmarks.md
	DATABASE_URL=$(LOAD_DATABASE_URL) CACHE_URL=$(LOAD_CACHE_URL) PYTHONPATH=platform:. \
	  $(PY) -m devtools.reference_loadtest --rounds $${ROUNDS:-2} --out docs/benchmarks.md

profile-answer: install ## where the answer path's web CPU goes: starts, answers, completions through the WSGI app under cProfile (Postgres + Redis); writes docs/benchmarks.md
	psql "$(dir $(LOAD_DATABASE_URL))postgres" -qc "DROP DATABASE IF EXISTS $(notdir $(LOAD_DATABASE_URL))" -c "CREATE DATABASE $(notdir $(LOAD_DATABASE_URL))"
	DATABASE_URL=$(LOAD_DATABASE_URL) PYTHONPATH=platform:. $(PY) manage.py migrate -v0
	DATABASE_URL=$(LOAD_DATABASE_URL) CACHE_URL=$(LOAD_CACHE_URL) DJANGO_SETTINGS_MODULE=devtools.settings_loadtest PYTHONPATH=platform:. \
	  $(PY) manage.py profile_answer --out docs/benchmarks.md

SCALE_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/perceptlab_scale
SCALE_DATA_DIR ?= $(CURDIR)/var/scale
SCALE_ENV := DATABASE_URL=$(SCALE_DATABASE_URL) PERCEPTLAB_DATA_DIR=$(SCALE_DATA_DIR) PYTHONPATH=platform:.
scale-study: install ## the BAPPS-scale study (187,700 2AFC items, 500k simulated judgments) in PostgreSQL; built once (about 5 min), found on reruns
	psql "$(dir $(SCALE_DATABASE_URL))postgres" -qtAc "SELECT 1 FROM pg_database WHERE datname = '$(notdir $(SCALE_DATABASE_URL))'" | grep -q 1 || \
	  psql "$(dir $(SCALE_DATABASE_URL))postgres" -qc "CREATE DATABASE $(notdir $(SCALE_DATABASE_URL))"
	$(SCALE_ENV) $(PY) manage.py migrate -v0
	$(SCALE_ENV) $(PY) manage.py scale_study

bench-scale: scale-study ## dashboard, workers, QC reads, export and retrain on the scale study next to a small one, with peak RSS; writes docs/benchmarks.md
	$(SCALE_ENV) $(PY) manage.py bench_scale --out docs/benchmarks.md

loadtest-scale: scale-study ## paced load test against the scale study beside a fresh study of its HIT size, 3 rounds in turn (start and answer p99, median ratio); writes docs/benchmarks.md
	$(SCALE_ENV) CACHE_URL=$(LOAD_CACHE_URL) DJANGO_SETTINGS_MODULE=devtools.settings_loadtest $(PY) manage.py loadtest \
	  --study-id $$($(SCALE_ENV) $(PY) manage.py scale_study --id-only 2>/dev/null | tail -1) --run paced --seconds $${SECONDS_:-30} --rounds $${ROUNDS:-3} --out docs/benchmarks.md

.PHONY: help install run test test-fast lint bench bench-adaptive bench-first-run loadtest loadtest-instances loadtest-servers loadtest-reference profile-answer contact-sheet clean scale-study bench-scale loadtest-scale
