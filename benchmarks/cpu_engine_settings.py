#!/usr/bin/env python
"""vLLM CPU engine settings on a real checkpoint: OpenMP thread binding, eager against compiled,
KV-cache size, KV block size.

    python benchmarks/cpu_engine_settings.py [--checkpoint runs/demo] [--items 200] [--quick]
    python benchmarks/cpu_engine_settings.py --only "KV cache" --only "block size"   # rerun some, keep the rest

Each setting runs in a fresh process (vLLM reads VLLM_CPU_OMP_THREADS_BIND when its engine starts):
load the checkpoint, score ``--items`` direct verification prompts of the embedded task (arithmetic
test problems, the task's own right and wrong solutions; the instruction is shared, so the prefix
cache serves it), then generate 64 tokens for 16 of them (n=4). Reports load, scoring and generation
time, and prompt tokens/s counting only tokens past the shared instruction. --only NAME (a part of
a setting's name, repeatable) runs those settings and updates their entries in the results JSON.
--quick: the tiny random-init model and 16 items, for the test suite (speeds not asserted).
Writes benchmarks/results/cpu_engine_settings.json (--quick: under runs/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BOTH_CORES = {"VLLM_CPU_OMP_THREADS_BIND": "0-1"}
EAGER_128 = {"enforce_eager": True, "block_size": 128}  # vLLM's CPU block size; the library's default is now 32
# name -> (environment, engine options). The KV cache is 1 GiB unless a setting says otherwise
# (genrm_ray.env sets VLLM_CPU_KVCACHE_SPACE=1, whole GiB only; the engine option
# kv_cache_memory_bytes replaces it). The baseline row repeats the 2-thread setting next to the
# KV-cache and block-size rows, so that they compare within one run.
SETTINGS = {
    "default (1 OpenMP thread, core 1 for the scheduler)": ({}, EAGER_128),
    "2 OpenMP threads on cores 0-1": (BOTH_CORES, EAGER_128),
    "2 threads, compiled (enforce_eager=False)": (BOTH_CORES, {**EAGER_128, "enforce_eager": False}),
    "2 threads, KV cache 0.25 GiB": (BOTH_CORES, {**EAGER_128, "kv_cache_memory_bytes": 2**28}),
    "2 threads, 1 GiB KV cache, block size 128 (baseline of the KV and block rows)": (BOTH_CORES, EAGER_128),
    "2 threads, KV cache 4 GiB": ({**BOTH_CORES, "VLLM_CPU_KVCACHE_SPACE": "4"}, EAGER_128),
    "2 threads, block size 64": (BOTH_CORES, {**EAGER_128, "block_size": 64}),
    "2 threads, block size 32": (BOTH_CORES, {**EAGER_128, "block_size": 32}),
}


def measure(model_dir: str, items: int, options: dict) -> dict:
    """One setting, in this process."""
    from genrm_ray import env

    env.configure(entry_point=True)
    from genrm_ray import prompts
    from genrm_ray.engine import VLLMBackend
    from genrm_ray.scoring import GenRMScorer, VerifyItem
    from genrm_ray.tasks import get_task

    task = get_task("arithmetic")
    import random

    rng = random.Random(0)
    pairs = []
    for p in task.generate("test", items, seed=0):
        pairs += [VerifyItem("arithmetic", p.question, c.solution) for c in task.candidate_solutions(p, 2, rng)]
    pairs = pairs[:items]
    t = time.perf_counter()
    backend = VLLMBackend(model_dir, dtype="float32", max_model_len=1024, seed=0, **options)
    load_s = time.perf_counter() - t
    scorer = GenRMScorer(backend)
    texts = [prompts.verify_direct_prompt(i.task, i.question, i.solution) for i in pairs]
    head = len(backend.tokenizer.encode(prompts.solve_prompt("arithmetic", "")))
    new_tokens = sum(len(backend.tokenizer.encode(x)) - head for x in texts)
    scorer.p_yes(texts[:2])  # warm-up
    t = time.perf_counter()
    scorer.p_yes(texts)
    score_s = time.perf_counter() - t
    t = time.perf_counter()
    outs = backend.generate([prompts.verify_cot_prompt(i.task, i.question, i.solution) for i in pairs[:16]], n=4,
                            temperature=0.7, max_tokens=64, seed=0)
    gen_s = time.perf_counter() - t
    generated = sum(len(c.token_ids) for o in outs for c in o)
    backend.close()
    return {"load_s": round(load_s, 1), "items": len(texts), "score_s": round(score_s, 2),
            "items_per_s": round(len(texts) / score_s, 2), "prompt_tokens_past_prefix_per_s": round(new_tokens / score_s, 1),
            "generated_tokens": generated, "generate_s": round(gen_s, 2), "generated_tokens_per_s": round(generated / gen_s, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="runs/demo")
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", action="append", default=[], metavar="NAME", help="run the settings whose name contains NAME")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one setting (JSON options) here
    p.add_argument("--out", default="")
    args = p.parse_args()
    if args.one:
        print("RESULT " + json.dumps(measure(args.checkpoint, args.items, json.loads(args.one))))
        return
    if args.quick:
        from genrm_ray import env

        env.configure(entry_point=True)
        from genrm_ray.models import create_tiny_model

        model_dir = str(create_tiny_model(REPO / "runs" / "bench-tiny-model", size="tiny", seed=0))
        items, settings = 16, dict(list(SETTINGS.items())[:2])
    else:
        from genrm_ray.runs import resolve_model_dir

        model_dir, items, settings = str(resolve_model_dir(args.checkpoint, "--checkpoint")), args.items, SETTINGS
    if args.only:
        settings = {name: s for name, s in settings.items() if any(part in name for part in args.only)}
        if not settings:
            raise SystemExit(f"--only {args.only}: no setting matches; settings: {list(SETTINGS)}")
    out = Path(args.out or (REPO / "runs" / "cpu_engine_settings_quick.json" if args.quick
                            else REPO / "benchmarks" / "results" / "cpu_engine_settings.json"))
    results = json.loads(out.read_text())["settings"] if args.only and out.is_file() else {}
    failed = []
    for name, (extra_env, options) in settings.items():
        proc = subprocess.run([sys.executable, __file__, "--checkpoint", model_dir, "--items", str(items),
                               "--one", json.dumps(options)], env={**os.environ, **extra_env},
                              capture_output=True, text=True, cwd=REPO, timeout=1800)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(f"setting {name!r} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
            failed.append(name)
            continue
        results[name] = {"env": extra_env, "engine_options": options, **json.loads(line[len("RESULT "):])}
        print(f"{name}: {results[name]}")
        out.parent.mkdir(parents=True, exist_ok=True)  # after each setting: a later failure loses nothing
        out.write_text(json.dumps({"checkpoint": model_dir, "machine": f"{platform.processor() or platform.machine()}, "
                                   f"{os.cpu_count()} logical CPUs", "command": "python benchmarks/cpu_engine_settings.py",
                                   "settings": results}, indent=2) + "\n")
    if failed:
        raise SystemExit(f"settings that failed: {failed} (the others are in {out})")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
