# One-command entry points. `make demo` and `make test` set up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-avx2 lint docs examples bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch and torchvision first, pinned: they install from this machine's disk.
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e ".[dev,docs]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/invprotect demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The same tests on another CPU's code paths (AVX2 kernels of ATen and oneDNN, as on a
# machine without AVX-512): shows whether a test depends on the machine.
test-avx2: $(STAMP)
	ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

examples: $(STAMP)
	$(BIN)/python examples/compose_blocks.py --size 32
	$(BIN)/python examples/thief_gallery.py --out $$(mktemp -d) --dip-iterations 20

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_blocks.py

clean:
	rm -rf $(VENV) site .pytest_cache .ruff_cache
