#!/usr/bin/env python
"""Synthesize GenRM-CoT training rationales with a teacher model (reference-guided grading).

    python jobs/synthesize_rationales.py --config configs/synth_gsm8k.yaml teacher=/path/to/hf_model
    python jobs/synthesize_rationales.py task=gsm8k problems_file=data/gsm8k/train.jsonl teacher=DIR rounds=8

For each problem, the task's candidate solutions (reference + perturbed, graded by the task) are shown
to the teacher together with the reference answer; `rounds` rationales are sampled per solution and
only those whose verdict matches the true label are kept (genrm_ray.synthesis). Writes a D_cot JSONL
(student prompt without the reference) and <output>.stats.json; prints the kept fraction.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import genrm_ray.env  # noqa: E402

genrm_ray.env.configure(entry_point=True)  # project caches + offline settings, before torch / vLLM / Ray load
from genrm_ray.config import ConfigError, load_config, to_dict  # noqa: E402
from genrm_ray.synthesis import SynthesisConfig  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=None, help="YAML config (SynthesisConfig fields)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. teacher=DIR rounds=8")
    return p.parse_args(argv)


def load_problems(cfg: SynthesisConfig):
    from genrm_ray.tasks import get_task

    task = get_task(cfg.task)
    if cfg.problems_file:
        problems = task.load(cfg.problems_file)
        return problems[: cfg.n_problems] if cfg.n_problems else problems
    return task.generate(cfg.split, cfg.n_problems, seed=cfg.seed)


def main(argv: list[str] | None = None) -> int:
    t0 = time.perf_counter()
    args = parse_args(argv)
    try:
        if args.config is not None and not args.config.is_file():
            raise ValueError(f"--config: no such file {args.config}")
        cfg = load_config(SynthesisConfig, args.config, args.overrides)
        if not cfg.teacher or not (Path(cfg.teacher) / "config.json").is_file():
            raise ValueError(f"teacher: {cfg.teacher!r} is not a Hugging Face model dir (no config.json)")
        if cfg.backend not in ("vllm", "hf"):
            raise ValueError(f"backend must be 'vllm' or 'hf', got {cfg.backend!r}")
        if cfg.problems_file and not Path(cfg.problems_file).is_file():
            raise ValueError(f"problems_file: no such file {cfg.problems_file}")
        problems = load_problems(cfg)  # a bad line fails here with file:line
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from genrm_ray.engine import make_backend
    from genrm_ray.sft_data import write_sft_jsonl
    from genrm_ray.synthesis import candidates, synthesize

    items = candidates(cfg.task, problems, cfg.candidates_per_problem, cfg.seed)
    n_right = sum(x.correct for x in items)
    print(f"[synth] {len(problems)} {cfg.task} problems, {len(items)} solutions ({n_right} correct); "
          f"teacher {cfg.teacher} ({cfg.backend}), {cfg.rounds} rounds each")
    teacher = make_backend(cfg.backend, cfg.teacher, **cfg.engine_options)
    try:
        records, stats = synthesize(items, teacher, cfg.rounds, cfg.temperature, cfg.max_tokens, cfg.seed, cfg.balance)
    finally:
        if hasattr(teacher, "close"):
            teacher.close()
    out = write_sft_jsonl(records, cfg.output)
    summary = {**dataclasses.asdict(stats), "kept_fraction": stats.kept_fraction, "output": str(out),
               "config": to_dict(cfg), "wall_s": round(time.perf_counter() - t0, 1)}
    Path(str(out) + ".stats.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"[synth] kept {stats.matched} of {stats.offered} rationales ({stats.kept_fraction:.1%}): "
          f"{stats.rejected_wrong_verdict} wrong verdict, {stats.rejected_no_verdict} no verdict, "
          f"{stats.rejected_leak} quoted the reference; wrote {stats.written} records to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
