#!/usr/bin/env python
"""The adversarial suite: how much reward each verifier gives responses written to fool it.

    python jobs/adversarial_suite.py --config configs/adversarial/mini_sudoku_demo.yaml
    python jobs/adversarial_suite.py --config configs/adversarial/mini_sudoku_demo.yaml verifiers.GenRM.path=runs/x
    python jobs/adversarial_suite.py --config configs/adversarial_served.yaml   # a served endpoint

Recipe (genrm_ray.evaluation.adversarial): (1) the config (bad input stops here, exit code 2);
(2) cfg.n problems of the held-out split, and for each one every class of the suite: master keys,
reasoning openers, the question repeated, bare answers, a well-formed wrong solution, injected verdict
and praise lines, the instruction, padding to the context budget, look-alike verdicts; each also
appended to the right solution; (3) every verifier scores them all, local ones also with the
prompt's defence off; (4) per class: mean reward, false-positive rate (wrong responses above 0.5),
the right solution's reward shift; results.json, results.md and scores.jsonl in the output dir.
No Ray: local verifiers run in this process; a served one is reached over HTTP or by app name.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from genrm_ray import launch  # noqa: E402  (first: project caches + offline settings)
from genrm_ray.config import to_dict  # noqa: E402
from genrm_ray.evaluation import adversarial as suite  # noqa: E402

DEFAULT_CONFIG = REPO / "configs" / "adversarial" / "mini_sudoku_demo.yaml"


def main(argv: list[str] | None = None) -> int:
    args = launch.parse_args(__doc__, DEFAULT_CONFIG, argv)
    command = "python jobs/adversarial_suite.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    cfg = launch.load(suite.SuiteConfig, args, check=suite.check_suite_config)
    try:  # a missing checkpoint fails here, before any engine loads
        model_dirs = {name: suite.resolve_verifier_path(v, f"verifiers.{name}.path")
                      for name, v in cfg.verifiers.items() if v.kind != "served"}
        sizer = suite.tokenizer_dir(cfg, model_dirs)
    except launch.BAD_INPUT as e:
        launch.fail(e)
    out = launch.run_dir(cfg.output_dir, "adversarial", cfg, "suite_config.json")

    from transformers import AutoTokenizer

    from genrm_ray.attacks import attack_responses
    from genrm_ray.tasks import get_task

    task = get_task(cfg.task, cfg.options)
    problems = task.generate(cfg.split, cfg.n, seed=cfg.seed)
    budget = suite.pad_budget(cfg)
    count = None
    if budget and sizer:
        tokenizer = AutoTokenizer.from_pretrained(sizer)
        count = lambda text: len(tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
    elif budget:
        budget = 0
        print("[suite] no padded class: every verifier is served, and no tokenizer (a run or model dir) sizes it")
    responses = attack_responses(task, problems, pad_tokens=budget, count_tokens=count, seed=cfg.seed)
    print(f"[suite] {len(responses)} responses for {len(problems)} {cfg.split} problems of {cfg.task}; "
          f"verifiers: {list(cfg.verifiers)}")

    scorers, closers = suite.make_scorers(cfg, model_dirs)
    rewards: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    started = time.perf_counter()

    def save(name: str, xs: list[float]) -> None:
        """After each verifier, everything so far on disk: a stopped run keeps what it scored."""
        nonlocal started
        seconds[name] = round(time.perf_counter() - started, 1)
        rewards[name] = xs
        print(f"[suite] {name}: {seconds[name]} s")
        write(out, cfg, command, problems, responses, budget, seconds, rewards)
        started = time.perf_counter()

    try:
        suite.score_suite(responses, scorers, on_done=save)
    finally:
        for close in closers:
            close()
    table = suite.markdown_table(json.loads((out / "results.json").read_text())["verifiers"])
    if cfg.results_json:
        Path(cfg.results_json).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "results.json", cfg.results_json)
    print(f"\n=== adversarial suite ({cfg.task}, {cfg.split}, {len(problems)} problems) ===\n{table}\nresults: {out}")
    return 0


def write(out: Path, cfg, command: str, problems, responses, budget: int, seconds: dict, rewards: dict) -> None:
    results = {
        "command": command,
        "config": to_dict(cfg),
        "n_problems": len(problems),
        "n_responses": len(responses),
        "pad_tokens": budget,
        "score_s": seconds,
        "verifiers": {name: suite.suite_metrics(responses, xs) for name, xs in rewards.items()},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(suite.markdown_table(results["verifiers"]))
    with (out / "scores.jsonl").open("w") as f:
        for record in suite.responses_as_records(responses, rewards):
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    sys.exit(main())
