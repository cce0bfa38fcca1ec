#!/usr/bin/env python
"""Where the vLLM CPU engine's time goes, from vLLM's own torch profiler, on a real checkpoint.

    python benchmarks/engine_profile.py [--checkpoint smollm2-135m-instruct] [--items 56] [--cot-items 4 --k 8] [--block-size 32]
    python benchmarks/engine_profile.py --quick --out /tmp/q.json     # tiny model, for the test suite

One engine (fp32, eager, bound to every core as the demo's engines are) and two phases:
  direct   p(Yes) of ``--items`` verification prompts of arithmetic test problems (the task's own
           right and wrong candidates; the shared instruction is prefix-cached)
  cot      ``--cot-items`` GenRM-CoT prompts, n = ``--k`` rationales of up to ``--max-tokens`` each
Each phase runs once unprofiled on its own items (its wall time), then profiled on fresh items. The
engine worker's table (self CPU time per op, as vLLM writes it) is grouped into matmuls, attention,
unfused elementwise ops (RMSNorm, SiLU-and-mul, rotary, residual adds) and the rest; the wall time
no torch op covers is the engine's scheduling, IPC and Python. The tokens each step computed come
from vLLM's step annotations (execute_context_<requests>(<tokens>)_generation_<requests>(<tokens>)),
so prefix-cache hits are not counted. Matmul FLOPs = 2 x the decoder's linear weights x computed
tokens + 2 x the LM head x sampled positions; the rate is compared with torch's 2048 x 2048 matmul
on the same cores. Writes benchmarks/results/engine_profile.json (or --out).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Op name -> group. vLLM's CPU build runs linear layers through oneDNN and attention through its own
# kernels; on x86 RMSNorm and SiLU-and-mul run as native torch ops (no fused CPU kernel; inductor
# fuses them when the engine is compiled).
GROUPS = {
    "matmul": re.compile(r"onednn_mm|aten::(mm|addmm|bmm|matmul|linear)$"),
    "attention": re.compile(r"attention|attn|kv_cache"),
    "elementwise (norm, activation, rotary, residual)": re.compile(
        r"aten::(mul|silu|add|pow|mean|rsqrt|sum|div_?|neg|cat|sigmoid)$|rotary|rms_norm|silu_and_mul"),
    "sampling and logits": re.compile(r"softmax|argmax|sampler|topk|top_k|sort|exponential|greedy|random|gather"),
}
STEP = re.compile(r"execute_context_(\d+)\((\d+)\)_generation_(\d+)\((\d+)\)")


def parse_table(path: Path) -> dict:
    """vLLM's profiler_out.txt: {op name: (self CPU seconds, calls)} and the total."""
    units = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
    ops, total = {}, None
    for line in path.read_text().splitlines():
        m = re.match(r"\s*(.+?)\s{2,}[\d.]+%\s+([\d.]+)(s|ms|us)\s+[\d.]+%\s+\S+\s+\S+\s+(\d+)\s*$", line)
        if m:
            ops[m.group(1)] = (float(m.group(2)) * units[m.group(3)], int(m.group(4)))
        m = re.match(r"Self CPU time total: ([\d.]+)(s|ms|us)", line.strip())
        if m:
            total = float(m.group(1)) * units[m.group(2)]
    if total is None:
        raise SystemExit(f"{path}: no 'Self CPU time total' line; is this a vLLM profiler table?")
    return {"ops": ops, "total_s": total}


def step_tokens(trace_dir: Path, prefix: str) -> dict:
    """Steps and tokens of the profiled window, from the step annotations in the worker's trace."""
    traces = sorted(trace_dir.glob(f"{prefix}*.pt.trace.json.gz"))
    if not traces:
        raise SystemExit(f"no {prefix}*.pt.trace.json.gz under {trace_dir}")
    with gzip.open(traces[-1], "rt") as f:
        events = json.load(f)["traceEvents"]
    steps = prefill_tokens = decode_tokens = sampled = 0
    for e in events:
        m = STEP.fullmatch(e.get("name", "")) if e.get("ph") == "X" else None
        if m:
            ctx_reqs, ctx_tokens, gen_reqs, gen_tokens = map(int, m.groups())
            steps += 1
            prefill_tokens += ctx_tokens
            decode_tokens += gen_tokens
            sampled += ctx_reqs + gen_reqs
    return {"steps": steps, "prefill_tokens": prefill_tokens, "decode_tokens": decode_tokens, "sampled_positions": sampled}


def linear_weights(model_dir: str) -> tuple[int, int]:
    """(decoder linear weights, LM head weights) of a Llama-style config."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(model_dir)
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    attn = c.hidden_size * head_dim * (2 * c.num_attention_heads + 2 * c.num_key_value_heads)  # q, o, k, v
    mlp = 3 * c.hidden_size * c.intermediate_size
    return c.num_hidden_layers * (attn + mlp), c.vocab_size * c.hidden_size


def matmul_peak_gflops(seconds: float = 3.0) -> float:
    """torch fp32 2048 x 2048 matmul rate on this process's threads (the reference of docs/performance.md)."""
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * 2048**3 * n / (time.perf_counter() - start) / 1e9


def breakdown(table: dict, wall_s: float) -> dict:
    groups = {name: 0.0 for name in [*GROUPS, "other torch ops"]}
    for op, (seconds, _) in table["ops"].items():
        group = next((g for g, rx in GROUPS.items() if rx.search(op)), "other torch ops")
        groups[group] += seconds
    groups["other torch ops"] += max(table["total_s"] - sum(groups.values()), 0.0)  # rows under the table's cut
    groups["outside torch ops (scheduler, IPC, Python)"] = max(wall_s - table["total_s"], 0.0)
    return {g: {"s": round(s, 3), "share": round(s / wall_s, 3)} for g, s in groups.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="smollm2-135m-instruct",
                   help="GenRM run dir, HF model dir, GGUF or built-in base model name")
    p.add_argument("--items", type=int, default=56, help="direct items per run (two runs)")
    p.add_argument("--cot-items", type=int, default=4)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=96)
    p.add_argument("--block-size", type=int, help="vLLM KV block size (default: the library's, 32 on CPU)")
    p.add_argument("--quick", action="store_true", help="tiny random-init model, few items (test suite)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "engine_profile.json"))
    args = p.parse_args()

    from genrm_ray import env

    env.configure(entry_point=True)
    from genrm_ray import prompts
    from genrm_ray.engine import VLLMBackend
    from genrm_ray.scoring import GenRMScorer
    from genrm_ray.tasks import get_task

    if args.quick:
        from genrm_ray.models import create_tiny_model

        model_dir = str(create_tiny_model(REPO / "runs" / "bench-tiny-model", size="tiny", seed=0))
        args.items, args.cot_items, args.k, args.max_tokens = 8, 2, 2, 8
    else:
        from genrm_ray.models.pretrained import resolve_base_model
        from genrm_ray.runs import resolve_model_dir

        model_dir = str(resolve_model_dir(args.checkpoint, "--checkpoint") if Path(args.checkpoint).is_dir()
                        else resolve_base_model(args.checkpoint, "--checkpoint", vllm=True))
    task, rng = get_task("arithmetic"), random.Random(0)
    items = [(q.question, c.solution) for q in task.generate("test", args.items + args.cot_items + 2, seed=0)
             for c in task.candidate_solutions(q, 2, rng)]
    direct = [prompts.verify_direct_prompt("arithmetic", q, y) for q, y in items]
    cot = [prompts.verify_cot_prompt("arithmetic", q, y) for q, y in items]

    peak = matmul_peak_gflops()  # before the engine starts: its idle OpenMP threads still take CPU time
    trace_dir = Path(tempfile.mkdtemp(prefix="genrm-engine-profile-"))
    options = {"block_size": args.block_size} if args.block_size else {}
    backend = VLLMBackend(model_dir, dtype="float32", max_model_len=1024, seed=0, enforce_eager=True, cpu_threads_bind="all",
                          profiler_config={"profiler": "torch", "torch_profiler_dir": str(trace_dir),
                                           "torch_profiler_with_stack": False}, **options)
    backend_block_size = backend.llm.llm_engine.vllm_config.cache_config.block_size
    scorer = GenRMScorer(backend)
    scorer.p_yes(direct[-2:])  # warm-up (and the shared instruction into the prefix cache)

    def run_direct(texts):
        scorer.p_yes(texts)

    def run_cot(texts):
        backend.generate(texts, n=args.k, temperature=0.7, max_tokens=args.max_tokens, seed=0)

    n, c = args.items, args.cot_items
    phases = {"direct": (run_direct, direct[:n], direct[n:2 * n]),
              "cot": (run_cot, cot[2 * n:2 * n + c], cot[2 * n + c:2 * n + 2 * c])}
    if len(phases["cot"][2]) < c or len(phases["direct"][2]) < n:
        raise SystemExit("internal: not enough test items for the phases")
    decoder_w, head_w = linear_weights(model_dir)
    results = {}
    for name, (run, plain_items, profiled_items) in phases.items():
        t = time.perf_counter()
        run(plain_items)
        plain_s = time.perf_counter() - t
        backend.llm.start_profile(name)
        t = time.perf_counter()
        run(profiled_items)
        wall_s = time.perf_counter() - t
        backend.llm.stop_profile()
        for _ in range(60):  # the worker writes its table and trace after stop_profile returns
            table_file = next(iter(sorted(trace_dir.glob(f"{name}*.profiler_out.txt"))), None)
            if table_file and any(trace_dir.glob(f"{name}*.pt.trace.json.gz")):
                break
            time.sleep(1)
        if table_file is None:
            raise SystemExit(f"vLLM wrote no profiler table under {trace_dir}")
        table, tokens = parse_table(table_file), step_tokens(trace_dir, name)
        computed = tokens["prefill_tokens"] + tokens["decode_tokens"]
        matmul_flops = 2 * decoder_w * computed + 2 * head_w * tokens["sampled_positions"]
        groups = breakdown(table, wall_s)
        matmul_s = groups["matmul"]["s"]
        results[name] = {
            "items": len(profiled_items), "wall_s_unprofiled": round(plain_s, 2), "wall_s_profiled": round(wall_s, 2),
            **tokens, "computed_tokens_per_s": round(computed / wall_s, 1),
            "ms_per_step": round(1000 * wall_s / max(tokens["steps"], 1), 1),
            "matmul_gflop": round(matmul_flops / 1e9, 1),
            "matmul_gflops_in_matmul_time": round(matmul_flops / 1e9 / matmul_s, 1) if matmul_s else None,
            "matmul_gflops_over_wall": round(matmul_flops / 1e9 / wall_s, 1),
            "share_of_2048_matmul_rate_over_wall": round(matmul_flops / 1e9 / wall_s / peak, 3),
            "breakdown": groups,
            "top_ops": {op: {"self_s": round(s, 3), "calls": k} for op, (s, k) in list(table["ops"].items())[:8]},
        }
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    backend.close()

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": "python benchmarks/engine_profile.py " + " ".join(sys.argv[1:]),
        "checkpoint": model_dir, "dtype": "float32", "enforce_eager": True, "cpu_threads_bind": "all",
        "k": args.k, "max_tokens": args.max_tokens, "block_size": backend_block_size,
        "decoder_linear_weights": decoder_w, "lm_head_weights": head_w,
        "torch_fp32_2048_matmul_gflops": round(peak, 1),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "phases": results}, indent=2) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
