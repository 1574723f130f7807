# The two commands a newcomer needs: `make demo` and `make test`. Both install what they need.
VENV := .venv
STAMP := $(VENV)/.installed
BIN := $(VENV)/bin

.PHONY: demo test faults check lint bench-single bench-small bench-hub bench-proxy bench-swarm \
	bench-manager bench-dropin bench-trade setup

$(STAMP): pyproject.toml constraints.txt scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/damselfly demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: lint
	$(BIN)/pytest -q -p no:cacheprovider

# The whole fault matrix (tests/faults), the long cases included (docs/reliability.md).
faults: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider -m '' tests/faults

bench-single: $(STAMP)
	DAMSELFLY_BENCH_DEPS=1 bash scripts/setup.sh
	$(BIN)/python bench/single/run.py $(BENCH_ARGS)

bench-small: $(STAMP)
	$(BIN)/python bench/small/run.py $(BENCH_ARGS)

bench-hub: $(STAMP)
	$(BIN)/python bench/hub/run.py $(BENCH_ARGS)

bench-dropin: $(STAMP)
	$(BIN)/python -m bench.dropin.run $(BENCH_ARGS)

bench-trade: $(STAMP)
	$(BIN)/python -m bench.trade.run $(BENCH_ARGS)

bench-manager: $(STAMP)
	$(BIN)/python -m bench.manager.run $(BENCH_ARGS)

bench-proxy: $(STAMP)
	$(BIN)/python bench/proxy/run.py $(BENCH_ARGS)

# Needs root (network namespaces, tc); installs aria2, opentracker, mktorrent and matplotlib.
TIER ?= smoke
bench-swarm: $(STAMP)
	DAMSELFLY_BENCH_DEPS=1 bash scripts/setup.sh
	$(BIN)/python bench/swarm/run.py --tier $(TIER) $(BENCH_ARGS)
