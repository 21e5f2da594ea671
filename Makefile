# Two commands do all the set-up on a fresh machine:
#   make demo   create .venv, install, train STAIR on the embedded synthetic default, print metrics
#   make test   create .venv, install with test extras, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# PyG (and torch.compile) write generated files into $TMPDIR: keep them inside the build folder.
export TMPDIR := $(CURDIR)/build/tmp

.PHONY: install demo test bench-quick clean

$(VENV)/.installed: pyproject.toml constraints/ci.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints/ci.txt -e ".[test,text,ogb,numba]"
	touch $@

install: $(VENV)/.installed
	@mkdir -p $(TMPDIR)

demo: install
	$(BIN)/stair-pyg train --config synthetic --out runs/demo

test: install
	$(BIN)/python -m pytest -q

bench-quick: install
	$(BIN)/python benchmarks/profile_models.py --quick

clean:
	rm -rf build runs .pytest_cache
