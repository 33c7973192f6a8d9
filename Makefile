# The README's two commands are `make demo` and `make test`; each sets everything up first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
UNDERTOW := $(VENV)/bin/undertow

.PHONY: setup demo check-demo test lint format typecheck bench clean

setup:
	@scripts/setup.sh

# The main job: the streaming monitor on the embedded stack, with a synthetic model whose
# labels follow its predictions, whose concept changes after 40 s and inputs after 100 s;
# it prints alerts as they fire and stops by itself.
demo: setup
	@$(UNDERTOW) demo

# The batch check on the bundled example: a fraud model's reference week against two
# drifted days. No broker, no Redis.
check-demo: setup
	@mkdir -p .undertow
	@$(UNDERTOW) baseline create --data examples/reference.csv --model fraud --version v1 \
		--out .undertow/fraud-v1.baseline.json
	@$(UNDERTOW) check --baseline .undertow/fraud-v1.baseline.json --data examples/current.csv

test: setup
	@$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check streams agents tests bench
	$(PY) -m ruff format --check streams agents tests bench
	$(PY) -m mypy streams

format: setup
	$(PY) -m ruff format streams agents tests bench
	$(PY) -m ruff check --fix streams agents tests bench

bench: setup
	@VENV=.venv-bench EXTRAS=bench scripts/setup.sh
	@.venv-bench/bin/python bench/bench_check.py $(BENCH_ARGS)
	@$(PY) bench/bench_stream.py --pending-memory $(BENCH_STREAM_ARGS)

clean:
	rm -rf $(VENV) .venv-bench .pytest_cache .mypy_cache .ruff_cache .hypothesis bench/data
