# One-command entry points. `make demo` and `make test` set up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast test-avx2 lint docs examples bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch and torchvision first, pinned: they install from this machine's disk.
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e ".[dev,docs]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/invprotect demo

# One worker per core (at most 4), each on one thread; a module's tests stay on one worker,
# so its trained fixtures are built once.
PYTEST := $(BIN)/python -m pytest -q -n auto --maxprocesses=4 --dist loadscope

test: $(STAMP)
	$(PYTEST)

# Everything but the tests marked `slow` (trainings, per-image optimisations): a quick check
# while editing. `make test` still runs them all.
test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

# The same tests on another CPU's code paths (AVX2 kernels of ATen and oneDNN, as on a
# machine without AVX-512): shows whether a test depends on the machine. The cross-machine
# test is left out: it sets the code paths of its own subprocesses and ran in `make test`.
test-avx2: $(STAMP)
	ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 $(PYTEST) -m "not cross_machine"

lint: $(STAMP)
	$(BIN)/ruff check .

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

examples: $(STAMP)
	$(BIN)/python examples/compose_blocks.py --size 32
	$(BIN)/python examples/thief_gallery.py --out $$(mktemp -d) --dip-iterations 20
	$(BIN)/python examples/train_on_protected.py --files 300 --steps 10

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_blocks.py

clean:
	rm -rf $(VENV) site .pytest_cache .ruff_cache
