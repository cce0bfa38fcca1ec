#!/usr/bin/env python
"""Synthesize GenRM-CoT training rationales with a teacher model (reference-guided grading).

    python jobs/synthesize_rationales.py task=gsm8k problems_file=tests/data/gsm8k/train_head200.jsonl teacher=DIR
    python jobs/synthesize_rationales.py --config my_synth.yaml rounds=8      # a YAML of SynthesisConfig fields

For each problem, the task's candidate solutions (reference + perturbed, graded by the task) are shown
to the teacher together with the reference answer; `rounds` rationales are sampled per solution and
only those whose verdict matches the true label are kept (genrm_ray.data.synthesis). Writes a D_cot JSONL
(student prompt without the reference) and <output>.stats.json; prints the kept fraction.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from genrm_ray import launch  # noqa: E402  (first: project caches + offline settings)
from genrm_ray.config import to_dict  # noqa: E402
from genrm_ray.data.synthesis import SynthesisConfig, check_config, load_problems  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    t0 = time.perf_counter()
    args = launch.parse_args(__doc__, None, argv)
    cfg = launch.load(SynthesisConfig, args, check=check_config)
    try:
        problems = load_problems(cfg)  # a bad line fails here with file:line
    except launch.BAD_INPUT as e:
        launch.fail(e)

    from genrm_ray.data.sft import write_sft_jsonl
    from genrm_ray.data.synthesis import candidates, synthesize
    from genrm_ray.engine import make_backend

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
