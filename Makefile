# make quickstart   set up .venv (pinned) and train the offline tiny quick start on CPU
# make test         set up .venv and .venv-unsloth and run the test suite (what CI runs)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# A second environment with Unsloth (its CPU mode), for the tests of the real Unsloth path.
UVENV := .venv-unsloth
UPY := $(UVENV)/bin/python

.PHONY: setup setup-unsloth quickstart test test-unsloth lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

# llama.cpp's GGUF converter (from llama-cpp-python's source package), for the GGUF export tests only.
LLAMA_CPP := .llama.cpp/convert_hf_to_gguf.py
$(LLAMA_CPP): | $(VENV)/.installed
	$(PY) -m aitraining.export.llamacpp .llama.cpp

setup-unsloth: $(UVENV)/.installed

# --no-deps for Unsloth: its metadata pulls torchvision, which breaks beside the CPU torch.
$(UVENV)/.installed: requirements.txt requirements-dev.txt requirements-unsloth.txt pyproject.toml
	$(PYTHON) -m venv $(UVENV)
	$(UPY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(UPY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-unsloth.txt -e .
	touch $@

quickstart: setup
	$(PY) -m aitraining experiment=quickstart

test: setup setup-unsloth $(LLAMA_CPP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q
	$(UPY) -m pytest -q -m unsloth

test-unsloth: setup-unsloth
	$(UPY) -m pytest -q -m unsloth

lint: setup
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) $(UVENV) outputs multirun .pytest_cache .llama.cpp
