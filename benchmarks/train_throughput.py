#!/usr/bin/env python
"""Training throughput: Ray Train + DeepSpeed ZeRO vs a plain single-process PyTorch loop.

    .venv/bin/python benchmarks/train_throughput.py [--steps 30] [--zero-stage 3] [--size small]
    .venv/bin/python benchmarks/train_throughput.py --base-model smollm2-135m-instruct --task arithmetic \
        --freeze-bottom-layers 24 --micro-batch-size 4 --zero-stage 2 --fp32 --workers 1,2 --steps 8

Both paths train the same GenRM objective (L_verify + lambda * L_correct) of the same model on the
same batches: the plain loop feeds, per optimizer step, exactly the micro-batches the Ray workers
see (rank 0..W-1 of BatchStream), each as one forward/backward over D_verify and D_correct stacked
(genrm_ray.train.step.genrm_loss), accumulating their gradients, with torch AdamW, in bf16 when
DeepSpeed runs bf16, with the same bottom layers frozen. Throughput = non-pad tokens / time inside
the optimizer steps, steps after the first, as genrm_ray.train reports it. --workers lists the Ray
Train world sizes to run (the plain loop feeds the largest one's batches). --base-model: a
pretrained model (HF dir, GGUF or built-in name, as `base_model` in a config) instead of a tiny
random-init preset. --breakdown: where a step's time goes, from DeepSpeed's own per-step timers
(`deepspeed.wall_clock_breakdown`: forward, backward compute, gradient reduction across workers
including the wait for the slower rank, optimizer step with ZeRO's parameter gather; rank 0, steps
after the first), the loop's step time and what the timers leave out, beside the plain loop's
forward+backward per micro-batch and optimizer step. Writes
benchmarks/results/train_throughput.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import genrm_ray.env  # noqa: E402

genrm_ray.env.configure(entry_point=True)  # project caches + offline settings, before torch / vLLM / Ray load
from genrm_ray.data import sft  # noqa: E402
from genrm_ray.data.sft import LabelledSolution  # noqa: E402
from genrm_ray.tasks import get_task  # noqa: E402


def build_data(folder: Path, task_name: str, n_problems: int, seed: int) -> tuple[Path, Path]:
    """D_verify + D_correct from the task's own right and wrong candidates (no policy needed)."""
    task, rng = get_task(task_name), random.Random(seed)
    problems = task.generate("train", n_problems, seed=seed)
    items = [LabelledSolution(p, c.solution, task.is_correct(c.solution, p))
             for p in problems for c in task.candidate_solutions(p, 4, rng)]
    verify = sft.write_sft_jsonl(sft.build_verify_direct(items, seed=seed), folder / "verify_direct.jsonl")
    correct = sft.write_sft_jsonl(sft.build_correct(items), folder / "correct.jsonl")
    return verify, correct


def plain_loop(cfg, steps: int, world: int) -> dict:
    """The same objective and batches in one process, no Ray, no DeepSpeed."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from genrm_ray.train.data import BatchStream, load_examples
    from genrm_ray.train.step import TargetTokenLoss, freeze_bottom, genrm_loss

    hp = cfg.train
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.path)
    sets = {"correct": load_examples(cfg.data.correct, "correct", tokenizer, cfg.data.max_length),
            "verify": load_examples(cfg.data.verify_direct, "verify_direct", tokenizer, cfg.data.max_length)}
    streams = {name: BatchStream(ex, hp.micro_batch_size, hp.seed + i, tokenizer.pad_token_id)
               for i, (name, ex) in enumerate(sorted(sets.items()))}
    torch.manual_seed(hp.seed)
    # bf16 like DeepSpeed's bf16 mode: parameters and compute in bf16 (DeepSpeed also keeps fp32
    # master weights; for a ~1M-parameter model that update costs next to nothing).
    dtype = torch.bfloat16 if cfg.deepspeed.bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(cfg.model.path, dtype=dtype).train()
    freeze_bottom(model, cfg.model.freeze_bottom_layers)
    model = TargetTokenLoss(model)  # the loss the workers compute (the head at target positions only)
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=hp.lr, betas=(0.9, 0.95), weight_decay=hp.weight_decay)
    times, tokens, losses, fb_times, opt_times = [], [], [], [], []
    for step in range(steps):
        batches, real = [], 0
        for rank in range(world):  # the micro-batches the W Ray workers would get for this step
            mb = {}
            for name, stream in streams.items():
                batch, n_real, _ = stream.get(step * world + rank)
                mb[name], real = batch, real + n_real
            batches.append(mb)
        t0 = time.perf_counter()
        for mb in batches:
            loss, _ = genrm_loss(model, mb["verify"], mb["correct"], cfg.objective.lambda_correct)  # one pass, as the workers
            (loss / world).backward()
        t1 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.deepspeed.gradient_clipping)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        fb_times.append((t1 - t0) / world)
        opt_times.append(times[-1] - (t1 - t0))
        tokens.append(real)
        losses.append(loss.item())
    timed = slice(1, None) if steps > 1 else slice(None)
    mean_ms = lambda xs: 1000 * sum(xs[timed]) / len(xs[timed])  # noqa: E731
    return {"tokens_per_s": sum(tokens[timed]) / sum(times[timed]), "steps": steps,
            "torch_threads": torch.get_num_threads(), "final_loss": losses[-1],
            "ms_forward_backward_per_micro_batch": mean_ms(fb_times), "ms_optimizer_step": mean_ms(opt_times)}


def deepspeed_breakdown(worker_log: Path) -> dict[str, float]:
    """Mean ms per optimizer step of DeepSpeed's wall_clock_breakdown timers (rank 0's
    `time (ms) | fwd_microstep: ... | ...` lines in its worker log), steps after the first."""
    import re

    lines = [line for line in worker_log.read_text().splitlines() if "time (ms)" in line and "fwd_microstep" in line]
    lines = [line for i, line in enumerate(lines) if i == 0 or line != lines[i - 1]]  # DeepSpeed prints each twice
    rows = [dict((k, float(v)) for k, v in re.findall(r"\|\s*(\w+): ([\d.]+)", line)) for line in lines]
    rows = rows[1:] if len(rows) > 1 else rows
    if not rows:
        raise SystemExit(f"{worker_log}: no DeepSpeed wall_clock_breakdown lines (was deepspeed.wall_clock_breakdown set?)")
    names = ["fwd_microstep", "bwd_inner_microstep", "bwd_allreduce_microstep", "step_microstep"]
    return {name.removesuffix("_microstep"): round(sum(r.get(name, 0.0) for r in rows) / len(rows), 1) for name in names}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--workers", default="2", help="Ray Train world sizes, one run each (e.g. 1,2)")
    p.add_argument("--zero-stage", type=int, default=3)
    p.add_argument("--size", default="small", help="genrm_ray.models tiny preset (when no --base-model)")
    p.add_argument("--base-model", help="a pretrained model: HF dir, GGUF file or built-in name")
    p.add_argument("--task", default="last_letter")
    p.add_argument("--freeze-bottom-layers", type=int, default=0)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--cpus-per-worker", type=int, default=1, help="Ray Train resources_per_worker.CPU (torch threads)")
    p.add_argument("--micro-batch-size", type=int, default=16)
    p.add_argument("--problems", type=int, default=300)
    p.add_argument("--fp32", action="store_true", help="fp32 instead of bf16 in both paths")
    p.add_argument("--breakdown", action="store_true", help="DeepSpeed's per-step timers (forward, backward, reduction, step)")
    p.add_argument("--plain-threads", default="2,1", help="torch threads for the plain loop, one run each")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train_throughput.json")
    args = p.parse_args()

    import ray
    import torch

    from genrm_ray.models import create_tiny_model
    from genrm_ray.models.pretrained import resolve_base_model
    from genrm_ray.train.config import TrainConfig
    from genrm_ray.train.loop import run_training

    worlds = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="genrm-bench-") as tmp:
        tmp = Path(tmp)
        verify, correct = build_data(tmp, args.task, args.problems, seed=0)
        if args.base_model:
            model_dir = resolve_base_model(args.base_model, "--base-model")
            model_info = {"base_model": args.base_model}
        else:
            model_dir = create_tiny_model(tmp / "model", size=args.size, seed=0)
            model_info = {"size": args.size}
        cfg = TrainConfig()
        cfg.model.path, cfg.model.freeze_bottom_layers = str(model_dir), args.freeze_bottom_layers
        cfg.data.verify_direct, cfg.data.correct, cfg.data.max_length = str(verify), str(correct), args.max_length
        cfg.objective.name, cfg.objective.mode, cfg.objective.lambda_correct = "genrm", "direct", 1.0
        cfg.train.max_steps, cfg.train.micro_batch_size = args.steps, args.micro_batch_size
        cfg.train.lr = 2e-4 if args.base_model else 1e-3
        cfg.train.warmup_steps, cfg.train.checkpoint_every = 1, 10**6
        cfg.deepspeed.zero_stage, cfg.deepspeed.bf16 = args.zero_stage, not args.fp32
        cfg.deepspeed.wall_clock_breakdown = args.breakdown
        cfg.logging.progress_bar, cfg.logging.wandb_mode = False, "disabled"
        cfg.scaling.resources_per_worker = {"CPU": args.cpus_per_worker}

        plains = []
        for threads in [int(t) for t in args.plain_threads.split(",")]:
            torch.set_num_threads(threads)
            t = time.perf_counter()
            plains.append(plain_loop(cfg, args.steps, max(worlds)))
            plains[-1]["wall_s"] = round(time.perf_counter() - t, 1)
            print(f"plain PyTorch loop: {plains[-1]['tokens_per_s']:.0f} tokens/s ({threads} threads)", flush=True)
        plain = max(plains, key=lambda r: r["tokens_per_s"])

        ray.init(runtime_env={"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1"}})
        runs = {}
        for world in worlds:
            cfg.scaling.num_workers, cfg.output_dir = world, str(tmp / f"ray_run_{world}")
            t = time.perf_counter()
            result = run_training(cfg)
            runs[world] = {"zero_stage": args.zero_stage, "workers": world, "cpus_per_worker": args.cpus_per_worker,
                           "tokens_per_s": round(result.tokens_per_s, 1),
                           "wall_s_including_startup": round(time.perf_counter() - t, 1),
                           "final_loss": round(result.loss_curves["loss"][-1], 4),
                           "padding_share": round(result.padding_share, 4)}
            if args.breakdown:
                timers = deepspeed_breakdown(Path(cfg.output_dir) / "worker_0.log")
                steps = [json.loads(x) for x in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()][1:]
                loop_ms = 1000 * sum(m["step_time_s"] for m in steps) / len(steps)
                gaps = [b["wall_time"] - a["wall_time"] - b["step_time_s"] for a, b in zip(steps, steps[1:])]
                runs[world]["deepspeed_ms_per_step_rank0"] = {
                    **timers, "train_step (the loop's step time)": round(loop_ms, 1),
                    # the loss (cross-entropy over the vocabulary) runs after the engine's forward
                    # and before its backward, so outside both timers
                    "outside the timers (loss, bookkeeping)": round(loop_ms - sum(timers.values()), 1),
                    # not in tokens/s: ray.train.report, the metrics log, the next batch, the token count
                    "between steps (report, logging, data)": round(1000 * sum(gaps) / max(len(gaps), 1), 1)}
                runs[world]["tokens_per_step"] = round(sum(m["tokens"] for m in steps) / len(steps))
            print(f"Ray Train + DeepSpeed, {world} worker(s): {result.tokens_per_s:.0f} tokens/s", flush=True)
        ray.shutdown()
        params = _count_parameters(model_dir)

    main_run = runs[max(worlds)]
    out = {
        "command": "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:]),
        "model": {**model_info, "parameters": params, "freeze_bottom_layers": args.freeze_bottom_layers},
        "task": args.task, "steps": args.steps, "micro_batch_size_per_worker": args.micro_batch_size,
        "workers": max(worlds), "bf16": not args.fp32,
        "ray_deepspeed": main_run,
        "ray_deepspeed_by_workers": list(runs.values()),
        "genrm_step": "one forward/backward per micro-batch over D_verify and D_correct stacked",
        "plain_pytorch": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in plains],
        "ratio_ray_over_best_plain": round(main_run["tokens_per_s"] / plain["tokens_per_s"], 3),
        "note": "both paths share the machine with whatever else runs; see machine.load_average",
        "machine": {**genrm_ray.env.machine_record(), "torch": torch.__version__},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    print(f"Ray Train + DeepSpeed ZeRO-{args.zero_stage} ({max(worlds)} workers): {main_run['tokens_per_s']:.0f} tokens/s; "
          f"plain loop: {plain['tokens_per_s']:.0f} tokens/s (best of {args.plain_threads} threads); "
          f"ratio {out['ratio_ray_over_best_plain']:.2f}")


def _count_parameters(model_dir: Path) -> int:
    """All parameters of the checkpoint (tied embeddings once), read from its safetensors headers."""
    from safetensors import safe_open

    total, seen = 0, set()
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for name in st.keys():
                if name not in seen:
                    seen.add(name)
                    shape = st.get_slice(name).get_shape()
                    n = 1
                    for d in shape:
                        n *= d
                    total += n
    return total


if __name__ == "__main__":
    main()
