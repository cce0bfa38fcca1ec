"""Throughput of the GenRM DeepSpeed step (genrm_ray.train.step) on one device, ZeRO-2 and ZeRO-3.

Builds a random-init Llama from a config (no download), then for each ZeRO stage times
``train_step`` on a GenRM step: a D_verify batch and a D_correct batch per step (lambda = 1), fed
as ONE forward and backward over both stacked (``step.genrm_loss``), bf16, gradient checkpointing,
AdamW. Prints and writes JSON: tokens/s (all tokens fed) and model TFLOP/s counting 6 N FLOPs per
token (N = all parameters, tied embeddings once). Results from before the single pass
(benchmarks/results/gpu_train_step_h200.json) timed two half-size passes per step.

    python benchmarks/gpu_train_step.py --out gpu.json                       # ~0.5B, 16 x 1024 tokens
    python benchmarks/gpu_train_step.py --device cpu --size tiny --out cpu.json   # smoke test

Needs torch, transformers and deepspeed only (no ray, no vllm): single process, world size 1, with
RANK/WORLD_SIZE/MASTER_* set here so deepspeed.init_distributed does not go looking for MPI.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from genrm_ray.train.config import DeepSpeedConfig, TrainHParams  # noqa: E402

SIZES = {
    # ~0.52B parameters with a 32k vocabulary (head size 64).
    "0.5b": dict(hidden_size=1280, intermediate_size=3456, num_hidden_layers=24, num_attention_heads=20, vocab_size=32000),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, vocab_size=512),
}


def genrm_batches(vocab: int, batch: int, seq_len: int, device: str, gen: torch.Generator) -> dict:
    """One GenRM micro-step of random tokens: D_verify (loss on the last 16 tokens: a short CoT
    verdict) and D_correct (loss on the second half: the solution), ``batch`` rows each, both
    ``seq_len`` wide (so stacking them adds no padding and every fed token is real)."""

    def make(target_from: int) -> dict:
        ids = torch.randint(0, vocab, (batch, seq_len), generator=gen)
        loss_mask = torch.zeros_like(ids)
        loss_mask[:, target_from:] = 1
        return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device), "loss_mask": loss_mask.to(device)}

    return {"verify": make(seq_len - 16), "correct": make(seq_len // 2)}


def run_stage(stage: int, args, device: str) -> dict:
    from genrm_ray.train.step import TargetTokenLoss, build_engine, train_step

    torch.manual_seed(0)
    config = LlamaConfig(**SIZES[args.size], max_position_embeddings=args.seq_len, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.gradient_checkpointing_enable()
    model.config.use_cache = False
    params = sum(p.numel() for p in model.parameters())
    # micro_batch_size counts the rows of one set, as in genrm_ray.train; the model sees 2x that.
    hp = TrainHParams(max_steps=1000, micro_batch_size=args.batch // 2, grad_accum=1, lr=1e-4, warmup_steps=1)
    engine = build_engine(TargetTokenLoss(model), DeepSpeedConfig(zero_stage=stage, bf16=True, gradient_clipping=1.0), hp)
    gen = torch.Generator().manual_seed(0)
    tokens_per_step = args.batch * args.seq_len  # batch/2 verify + batch/2 correct sequences, one pass
    times, losses = [], []
    for i in range(args.warmup + args.steps):
        micro = [genrm_batches(config.vocab_size, args.batch // 2, args.seq_len, device, gen)]
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        terms = train_step(engine, micro, "genrm", lam=1.0)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
            losses.append(terms["loss"])
    step_s = sum(times) / len(times)
    result = {
        "zero_stage": stage,
        "parameters": params,
        "tokens_per_step": tokens_per_step,
        "step_s": step_s,
        "step_times_s": times,
        "tokens_per_s": tokens_per_step / step_s,
        "model_tflops": 6 * params * tokens_per_step / step_s / 1e12,
        "loss": losses,
        "peak_gpu_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
    }
    del engine, model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="JSON result file")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--size", choices=sorted(SIZES), default="0.5b")
    parser.add_argument("--batch", type=int, default=16, help="sequences per step (half D_verify, half D_correct)")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--stages", type=int, nargs="+", default=[2, 3])
    args = parser.parse_args()
    if args.batch % 2:
        parser.error("--batch must be even (half D_verify, half D_correct)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no GPU")
    if args.device == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")

    # World size 1 without a launcher: give torch.distributed the env:// rendezvous it expects.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import deepspeed

    deepspeed.init_distributed(dist_backend="nccl" if args.device == "cuda" else "gloo")
    if args.device == "cuda":
        torch.cuda.set_device(0)

    report = {
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
        "size": args.size,
        "torch": torch.__version__,
        "deepspeed": deepspeed.__version__,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "bf16": True,
        "gradient_checkpointing": True,
        "genrm_step": "one forward + backward over D_verify and D_correct stacked (step.genrm_loss)",
        "flops_per_token": "6N (N = all parameters, tied embeddings once)",
        "results": [run_stage(stage, args, args.device) for stage in args.stages],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for r in report["results"]:
        print(f"ZeRO-{r['zero_stage']}: {r['tokens_per_s']:,.0f} tokens/s, {r['model_tflops']:.1f} model TFLOP/s, "
              f"{r['step_s']:.3f} s/step ({r['parameters'] / 1e6:.0f}M params)")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
