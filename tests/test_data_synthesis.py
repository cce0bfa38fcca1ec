"""Rationale synthesis (genrm_ray.data.synthesis, jobs/synthesize_rationales.py): reference-guided teacher
prompts, the verdict filter counted exactly with a scripted teacher, and the job over a real tiny model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from genrm_ray import prompts
from genrm_ray.data.sft import LabelledSolution, load_sft_jsonl
from genrm_ray.data.synthesis import candidates, cut_after_verdict, synthesize
from genrm_ray.engine import Completion, GenerationBackend
from genrm_ray.tasks import get_task
from tests.fixtures.data import GSM8K_HEAD

REPO = Path(__file__).resolve().parent.parent
JOB = REPO / "jobs" / "synthesize_rationales.py"


def run_job(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(JOB), *args], cwd=REPO, capture_output=True, text=True, timeout=300)


class ScriptedTeacher:
    """Test double for a teacher model (a tiny model cannot write rationales without training).

    Implements GenerationBackend. It grades by comparing the solution's final answer with the
    reference answer shown in the prompt (reference-guided), and its k-th sample per prompt follows a
    script: 0 the right verdict (then rambles on, which must be cut), 1 the wrong verdict, 2 no verdict,
    3 the right verdict but quoting the reference line the student will not see.
    """

    def __init__(self, tokenizer, task: str):
        self.tokenizer = tokenizer
        self.task = get_task(task)
        self.prompts_seen: list[str] = []

    def generate(self, prompts_, *, n=1, temperature=1.0, top_p=1.0, max_tokens=256, stop=None, seed=None):
        out = []
        for p in prompts_:
            self.prompts_seen.append(p)
            reference = re.search(rf"^{prompts.REFERENCE_ANSWER} (.*)$", p, re.M).group(1)
            solution = p.split(prompts.THINK + "\n", 1)[1].split(f"\n{prompts.REFERENCE_ANSWER}", 1)[0]
            answer = self.task.extract_answer(solution)
            right = answer is not None and self.task.answers_equal(answer, reference)
            q = prompts.DIRECT_QUESTION
            script = [
                f"Step 1 checks the answer.\n{q}{prompts.verdict_text(right)}\nQ: more text",
                f"Step 1 checks the answer.\n{q}{prompts.verdict_text(not right)}",
                "Step 1 checks the answer and then runs out of tok",
                f"{prompts.REFERENCE_ANSWER} {reference}\n{q}{prompts.verdict_text(right)}",
            ]
            out.append([Completion(script[k % len(script)], [1, 2, 3], "stop") for k in range(n)])
        return out

    def next_token_logprobs(self, prompts_, token_ids):
        raise NotImplementedError("not used by synthesis")


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_teacher_prompt_shows_reference_and_student_prompt_does_not():
    teacher = prompts.reference_guided_verify_prompt("gsm8k", "How many?", "2+2=4\nThe answer is 4.", "4")
    student = prompts.verify_cot_prompt("gsm8k", "How many?", "2+2=4\nThe answer is 4.")
    assert f"{prompts.REFERENCE_ANSWER} 4\n" in teacher and prompts.REFERENCE_ANSWER not in student
    assert teacher.endswith(prompts.COT_TRIGGER)
    assert teacher.replace(f"{prompts.REFERENCE_ANSWER} 4\n", "") == student


@pytest.mark.parametrize("text, expected", [
    ("a\nVerification: Is the answer correct (Yes/No)? Yes\nQ: x", "a\nVerification: Is the answer correct (Yes/No)? Yes"),
    ("a\nVerification: Is the answer correct (Yes/No)? No more", "a\nVerification: Is the answer correct (Yes/No)? No"),
    ("a\nVerification: Is the answer correct (Yes/No)? Nope", "a\nVerification: Is the answer correct (Yes/No)? Nope"),
    ("no question at all", "no question at all"),
])
def test_cut_after_verdict(text, expected):
    assert cut_after_verdict(text) == expected


@pytest.mark.parametrize("task_name", ["gsm8k", "last_letter"])
def test_filter_keeps_exactly_the_rationales_that_match_the_label(tokenizer, task_name):
    task = get_task(task_name)
    problems = task.load(GSM8K_HEAD)[:6] if task_name == "gsm8k" else task.generate("train", 6, seed=1)
    items = candidates(task_name, problems, 4, seed=0)
    n_pos = sum(x.correct for x in items)
    assert 0 < n_pos < len(items)  # both labels present, so the filter is tested in both directions
    teacher = ScriptedTeacher(tokenizer, task_name)
    assert isinstance(teacher, GenerationBackend)

    records, stats = synthesize(items, teacher, rounds=4, balance=False)
    s = len(items)
    assert (stats.offered, stats.matched, stats.rejected_wrong_verdict, stats.rejected_no_verdict,
            stats.rejected_leak, stats.written) == (4 * s, s, s, s, s, s)
    assert stats.kept_fraction == 0.25
    # The teacher saw every solution with its reference answer; the records carry the student prompt.
    assert len(teacher.prompts_seen) == s
    for x, prompt in zip(items, teacher.prompts_seen):
        assert f"{prompts.REFERENCE_ANSWER} {x.problem.answer}\n" in prompt
    for x, r in zip(items, records):
        assert r.kind == "verify_cot" and r.label == x.correct
        assert r.prompt == prompts.verify_cot_prompt(task_name, x.problem.question, x.solution)
        assert prompts.REFERENCE_ANSWER not in r.prompt + r.target
        assert prompts.split_verdict(r.target)[1] == x.correct and not r.target.endswith("more text")

    balanced, bstats = synthesize(items, ScriptedTeacher(tokenizer, task_name), rounds=2, balance=True)
    assert bstats.matched == s and bstats.written == len(balanced) == 2 * min(n_pos, s - n_pos)
    assert sum(r.label for r in balanced) == len(balanced) // 2


def test_rounds_must_be_positive(tokenizer):
    item = LabelledSolution(get_task("last_letter").generate("train", 1)[0], "x", False)
    with pytest.raises(ValueError, match="rounds"):
        synthesize([item], ScriptedTeacher(tokenizer, "last_letter"), rounds=0)


def test_job_with_a_real_tiny_teacher_writes_d_cot_and_stats(tiny_model_dir, tmp_path):
    out = tmp_path / "cot.jsonl"
    proc = run_job(
        "task=gsm8k", f"problems_file={GSM8K_HEAD}", "n_problems=3", "candidates_per_problem=3",
        f"teacher={tiny_model_dir}", "backend=hf", "engine_options={dtype: float32}", "rounds=2", "max_tokens=16",
        f"output={out}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads(Path(str(out) + ".stats.json").read_text())
    assert stats["solutions"] == 9 and stats["offered"] == 18
    # An untrained teacher almost never writes a verdict; whatever it wrote is accounted for exactly.
    assert stats["matched"] + stats["rejected_wrong_verdict"] + stats["rejected_no_verdict"] + stats["rejected_leak"] == 18
    assert stats["kept_fraction"] == pytest.approx(stats["matched"] / 18)
    if stats["written"]:
        assert len(load_sft_jsonl(out, kinds=["verify_cot"])) == stats["written"]  # schema-checked
    else:
        assert out.read_text() == ""
    assert "kept" in proc.stdout


def test_job_fails_fast_on_bad_input(tmp_path, tiny_model_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "no number here"}\n')
    for args, message in [(["teacher=/nonexistent"], "teacher: /nonexistent is not a Hugging Face model dir"),
                          ([f"teacher={tiny_model_dir}", f"problems_file={bad}"], f"{bad}:1"),
                          ([f"teacher={tiny_model_dir}", "rounds_typo=3"], "rounds_typo"),
                          ([f"teacher={tiny_model_dir}", "backend=trt"], "'backend' must be one of ['vllm', 'hf']")]:
        proc = run_job(*args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
