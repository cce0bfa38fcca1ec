"""Process environment: every cache under one project-local folder, offline model loading.

Applied on `import genrm_ray`, before torch, vLLM, Ray or DeepSpeed are imported by our code, but
only in genrm-ray's own processes: those where GENRM_CACHE_DIR is set. `make` exports it; jobs,
benchmarks and tests call ``configure(entry_point=True)`` first, which sets it to <repo>/.cache when
missing; Ray workers and vLLM engine processes inherit it. A process that only imports a client
piece (an RL trainer loading genrm_ray.integrations) has no GENRM_CACHE_DIR, and nothing changes
there: its HF cache, hub access and wandb mode stay its own.
Values already set in the environment win, so an operator can point any cache elsewhere.

Model hub: ONE setting, ``GENRM_HUB``. Unset (or empty), no hub is configured: HF_HUB_OFFLINE=1 and
TRANSFORMERS_OFFLINE=1, and a base model is a local dir, a .gguf file or a built-in name. Set to a
hub's URL (``https://huggingface.co``, or a mirror), the offline settings are left out, HF_ENDPOINT is
that URL, and ``base_model`` / ``models.policy`` may name a hub id (``Qwen/Qwen2.5-1.5B-Instruct``;
genrm_ray.models.pretrained). A hub id without GENRM_HUB fails before Ray starts, naming GENRM_HUB.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """The one folder that holds every cache (override with GENRM_CACHE_DIR)."""
    return Path(os.environ.get("GENRM_CACHE_DIR") or REPO_ROOT / ".cache")


HUB_SETTING = "GENRM_HUB"


def hub_url() -> str:
    """The model hub's URL (GENRM_HUB), or "" when none is configured."""
    return os.environ.get(HUB_SETTING, "").strip().rstrip("/")


def configure(entry_point: bool = False) -> None:
    """Set the defaults below (setdefault) when GENRM_CACHE_DIR is set; ``entry_point=True`` (jobs,
    benchmarks, tests) sets it to <repo>/.cache first when missing."""
    if entry_point:
        os.environ.setdefault("GENRM_CACHE_DIR", str(REPO_ROOT / ".cache"))
    if not os.environ.get("GENRM_CACHE_DIR"):
        return
    root = cache_dir()
    hub = hub_url()
    # No hub configured: load local directories only. A configured hub: its URL, and nothing offline.
    hub_settings = {"HF_ENDPOINT": hub} if hub else {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    defaults = {
        **hub_settings,
        "HF_HOME": root / "hf",
        "TORCH_EXTENSIONS_DIR": root / "torch_extensions",  # DeepSpeed's JIT-compiled ops
        "TORCHINDUCTOR_CACHE_DIR": root / "inductor",
        "VLLM_CACHE_ROOT": root / "vllm",
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB; vLLM's CPU default (4 GiB) is too much for tests
        "XDG_CACHE_HOME": root / "xdg",
        "WANDB_MODE": "offline",
        "WANDB_DIR": root / "wandb",
        "WANDB_CACHE_DIR": root / "wandb" / "cache",
        "WANDB_DATA_DIR": root / "wandb" / "data",
        "WANDB_SILENT": "true",
        "RAY_TMPDIR": root / "ray",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if _torch_is_cpu_build():
        # DeepSpeed probes for GPUs on every import and warns "unable to detect" when it finds none.
        defaults["DS_ACCELERATOR"] = "cpu"
    for key, value in defaults.items():
        if isinstance(value, Path):
            value.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault(key, str(value))


def _torch_is_cpu_build() -> bool:
    """Whether the installed torch is a CPU-only build (its version ends in +cpu), read without
    importing torch."""
    from importlib import metadata

    try:
        return metadata.version("torch").endswith("+cpu")
    except metadata.PackageNotFoundError:
        return False


def release_free_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc ``malloc_trim``); a no-op elsewhere.

    A training step's activations are mostly 1-32 MiB tensors, which glibc serves from the heap and,
    once freed, keeps: a GRPO PolicyWorker held 8.7 GB after its steps, and with the verifier
    refresh's trainer beside it the node ran out of memory. Actors whose heavy phases take turns
    call this after each phase, so that one phase's peak is not held through the others'."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, looked up once (find_library runs ldconfig in a subprocess); None elsewhere."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


def node_memory_used_gib() -> float:
    """Memory in use on this machine (total minus available, as Ray's memory monitor counts it), GiB."""
    import psutil  # a Ray dependency

    mem = psutil.virtual_memory()
    return (mem.total - mem.available) / 2**30


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX). On an AVX2-only CPU torch's bf16
    matmul ran at 1.0 GFLOP/s against 148 for fp32 (2 threads, measured here), and vLLM's bf16 engine
    4.5x slower than its fp32 one: there bf16 is no saving but a 5-150x slowdown."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def machine_record() -> dict:
    """What a figure was measured on, for results JSON: the CPU model and count, whether it has fast
    bf16, the platform and the load average (other jobs on the machine slow what is measured)."""
    import platform

    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
               platform.processor() or None)
    return {"cpu": cpu, "cpus": os.cpu_count(), "fast_bf16": cpu_has_fast_bf16(), "platform": platform.platform(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


TOKEN_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def _drop_token_auth_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Token authentication is enabled")


def connect_ray(address: str | None = "", **init_options) -> None:
    """Join the Ray cluster at ``address`` or $RAY_ADDRESS (set by ``ray job submit``), else start a
    local one; a no-op when this process is already connected (e.g. from a test session).
    ``init_options`` go to ``ray.init`` (e.g. log_to_driver=False)."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS", "")
    if not address:
        # Ray Train's controller polls workers every 2 s by default, so each ray.train.report costs
        # ~1.7 s on short CPU steps; the local raylet inherits this faster polling.
        os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
        # Ray Train's preemption watcher follows node drains, which a local cluster never has; its
        # actor logs a core_worker error on every run's console (constructor arguments in the object
        # store). A cluster given by address keeps it.
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
        # Ray turns token authentication on for a new local cluster (its default) and logs a WARNING
        # saying so on every run's console; the notice is dropped, the authentication stays on.
        logging.getLogger(TOKEN_AUTH_LOGGER).addFilter(_drop_token_auth_notice)
    ray.init(address=address or None, **init_options)
    print(f"[ray] {ray.cluster_resources()}")
