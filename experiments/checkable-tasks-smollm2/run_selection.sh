#!/usr/bin/env bash
# The selection runs, one after another (each a jobs/train_genrm.py run at the demo's budget, then
# measure.py for pass@k and the held-out figures on the policy's own solutions). Logs in logs/.
# Everything is inside main(), so bash has read the whole file before running it: editing the file
# while a run goes on does not change (or break) that run.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
run() {  # name, overrides...
  local name=$1; shift
  if [ ! -f runs/select-$name/summary.json ]; then
    $PY jobs/train_genrm.py --config configs/train/mini_sudoku_smollm2.yaml run_dir=runs/select-$name "$@" > logs/select-$name.log 2>&1 || { echo "$name failed"; return; }
  fi
  $PY experiments/checkable-tasks-smollm2/measure.py runs/select-$name --out experiments/checkable-tasks-smollm2/results/select-$name.json > logs/select-$name.select.log 2>&1 || echo "$name select failed"
}
main() {
mkdir -p logs experiments/checkable-tasks-smollm2/results
for spec in "$@"; do
  case $spec in
    sudoku-e46) run sudoku-e46 ;;
    # The same policy and samples (the data build reuses them), rationales that name every cell
    # (tasks/sudoku.py, "cells"), 80 steps (micro-batches of 2: the longer examples ran out of memory at
    # 4), held-out rationales at temperature 0.2.
    sudoku-e46-cells) run sudoku-e46-cells data.rationale_format=cells genrm.train.max_steps=80 genrm.train.micro_batch_size=2 genrm.train.grad_accum=2 eval.cot.temperature=0.2 eval.cot.max_rationale_tokens=448 ;;
    # The flagged format (tasks/sudoku.py): the puzzle's symbol beside each cell of a row line, a changed
    # given flagged there. 30 steps (the compact run had 60, the cells run 80): at 80 s a step on the
    # machine of its run, that is what fitted one session.
    sudoku-e46-flagged) run sudoku-e46-flagged data.rationale_format=flagged genrm.train.max_steps=30 genrm.train.micro_batch_size=2 genrm.train.grad_accum=2 eval.cot.temperature=0.2 eval.cot.max_rationale_tokens=448 ;;
    # The same data, GenRM direct (one token, no rationale): what fits the demo's 30 minutes.
    sudoku-e46-direct) run sudoku-e46-direct genrm.objective.mode=direct genrm.train.max_steps=60 genrm.data.max_length=256 ;;
    # The same, but D_verify keeps every wrong grid (right ones repeated to balance: data.verify_balance),
    # 75 steps of 16 (1,200 examples, about half of it: 130 steps ran at 39 s each).
    sudoku-e46-direct-all) run sudoku-e46-direct-all genrm.objective.mode=direct data.verify_balance=upsample genrm.train.max_steps=75 genrm.train.micro_batch_size=8 genrm.data.max_length=256 ;;
    sudoku-e810) run sudoku-e810 "data.task.options={min_empty: 8, max_empty: 10}" ;;
    # The second sudoku difficulty with GenRM direct at the direct row's budget: the policy's pass@k and
    # the direct verifier's AUROC (a CoT row at 8-10 blanks does not fit one session on this machine).
    sudoku-e810-direct) run sudoku-e810-direct "data.task.options={min_empty: 8, max_empty: 10}" genrm.objective.mode=direct genrm.train.max_steps=60 genrm.data.max_length=256 ;;
    countdown-n3) run countdown-n3 data.task.name=countdown "data.task.options={min_numbers: 3, max_numbers: 3, min_value: 1, max_value: 9, min_target: 1, max_target: 30, operators: ['+', '-', '*']}" ;;
    # Countdown at the first difficulty with GenRM direct at the direct sudoku row's budget (60 steps):
    # the policy's pass@k and the verifier's within-problem AUROC, no line agreement (no rationales).
    countdown-n3-direct) run countdown-n3-direct data.task.name=countdown "data.task.options={min_numbers: 3, max_numbers: 3, min_value: 1, max_value: 9, min_target: 1, max_target: 30, operators: ['+', '-', '*']}" genrm.objective.mode=direct genrm.train.max_steps=60 genrm.data.max_length=256 ;;
    countdown-n4) run countdown-n4 data.task.name=countdown "data.task.options={min_numbers: 4, max_numbers: 4, min_value: 1, max_value: 20, min_target: 10, max_target: 100, operators: ['+', '-', '*', '/']}" ;;
    *) echo "unknown spec $spec" ;;
  esac
done
}
main "$@"
