# The README's two commands: `make demo` and `make test`. Both set up from nothing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# `make test` runs test files on this many pytest-xdist workers (one file stays on one worker)
TEST_WORKERS ?= 2
STAMP  := $(VENV)/.installed

.PHONY: setup browser demo test test-fast bench bench-tsb clean

setup: $(STAMP) browser

# The review page's browser test drives Debian's chromium with chromium-driver (selenium).
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "chromium and chromium-driver are missing: install them (sudo apt-get install chromium chromium-driver) for the browser test"; fi; }

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	# A CPU build of torch 2.13.0 is on disk here; a bare `torch` may pull a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/vae-anomaly demo

test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-fast: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not slow"

bench: setup
	$(PY) -m benchmarks.run

# TSB-AD's methods and metrics (benchmarks/tsb.py) in a venv of their own: tsb-ad 1.5 needs numpy < 2.
# torch first (the CPU build), then tsb-ad, then this project without its pipeline dependencies
# (vae_core needs only torch, numpy, pandas, pyarrow and pydantic). TSB_ARGS: e.g. --quick, --only nab.
TSB_VENV ?= .venv-tsb
TSB_STAMP := $(TSB_VENV)/.installed

$(TSB_STAMP): pyproject.toml
	test -x $(TSB_VENV)/bin/python || python3 -m venv $(TSB_VENV)
	$(TSB_VENV)/bin/python -c "import torch" 2>/dev/null || $(TSB_VENV)/bin/pip install -q torch==2.13.0
	$(TSB_VENV)/bin/pip install -q tsb-ad==1.5 "pyarrow>=14,<22" "pandas>=2.0.3,<3" "pydantic>=2.5" "psutil>=5.9"
	$(TSB_VENV)/bin/pip install -q --no-deps -e .
	touch $(TSB_STAMP)

bench-tsb: $(TSB_STAMP)
	nice -n 19 $(TSB_VENV)/bin/python -m benchmarks.tsb $(TSB_ARGS)

clean:
	rm -rf .state data/lake
