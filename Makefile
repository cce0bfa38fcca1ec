# genrm-ray: `make demo` runs the embedded default job, `make test` runs the test suite.
# Both run `make setup` first, which is a fast no-op once .venv matches pyproject.toml.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.genrm-setup-done
# Every cache (pip, torch extensions, vLLM, inductor, HF, wandb, Ray temp) lives under one folder.
export GENRM_CACHE_DIR ?= $(CURDIR)/.cache
export PIP_CACHE_DIR := $(GENRM_CACHE_DIR)/pip
TORCH_PIN := torch==2.13.0+cpu

.PHONY: setup demo test clean-cache

setup: $(STAMP)

$(STAMP): pyproject.toml
	@echo ">> setting up $(VENV) (CPU stack; caches under $(GENRM_CACHE_DIR))"
	@start=$$(date +%s); \
	set -euo pipefail; \
	test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	$(PY) -m pip install -q --upgrade pip setuptools wheel; \
	$(PY) -m pip install -q "$(TORCH_PIN)"; \
	$(PY) -m pip install -q -e ".[cpu,test]" "$(TORCH_PIN)"; \
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true; \
	$(PY) -c "import vllm, ray, deepspeed, torch, transformers; print('stack ok: torch', torch.__version__, 'vllm', vllm.__version__, 'ray', ray.__version__, 'deepspeed', deepspeed.__version__, 'transformers', transformers.__version__)"; \
	touch $(STAMP); \
	echo ">> setup took $$(( $$(date +%s) - start )) s"

demo: setup
	$(PY) jobs/train_genrm.py

test: setup
	$(PY) -m pytest tests -q

clean-cache:
	rm -rf $(GENRM_CACHE_DIR)
