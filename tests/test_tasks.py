"""Tasks: registry, seeded splits, loading, answer extraction, grading, rationales and candidates."""

import json
import random
import re
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genrm_ray import prompts
from genrm_ray.prompts import DIRECT_QUESTION, NO, YES
from genrm_ray.tasks import OOD, SPLITS, TASKS, Problem, Task, get_task, split_of
from genrm_ray.tasks.mathtext import find_equations
from tests.fixtures.data import GSM8K_HEAD

GENERATED = ["last_letter", "word_sort", "arithmetic"]
YES_LINE, NO_LINE = DIRECT_QUESTION + YES, DIRECT_QUESTION + NO


def final_answer_line(solution: str) -> str | None:
    """Independent oracle for texts in the tasks' own format: X of a last line 'The answer is X.'"""
    m = re.fullmatch(r"The answer is (.+)\.", solution.rstrip().split("\n")[-1])
    return m.group(1) if m else None


# ---- registry and generation --------------------------------------------------------------------


def test_registry_holds_the_four_tasks():
    assert sorted(TASKS) == ["arithmetic", "gsm8k", "last_letter", "word_sort"]
    for name, task in TASKS.items():
        assert get_task(name) is task and task.name == name and prompts.problem_noun(name)


def test_unknown_task_names_the_known_ones():
    with pytest.raises(ValueError, match="known tasks: arithmetic, gsm8k, last_letter, word_sort"):
        get_task("chess")


@pytest.mark.parametrize("name", GENERATED)
def test_generate_is_deterministic_per_seed(name):
    task = get_task(name)
    a, b = task.generate("train", 40, seed=3), task.generate("train", 40, seed=3)
    assert a == b
    assert [p.question for p in task.generate("train", 40, seed=4)] != [p.question for p in a]
    assert len({p.question for p in a}) == 40  # deduplicated within the split
    assert all(p.task == name and p.id and p.answer for p in a)


@pytest.mark.parametrize("name", GENERATED)
def test_splits_never_overlap_whatever_the_seeds(name):
    task = get_task(name)
    questions = {split: set() for split in SPLITS}
    for seed in range(3):
        for split, n in [("train", 300), ("validation", 60), ("test", 60)]:
            problems = task.generate(split, n, seed=seed)
            assert all(split_of(p.question) == split for p in problems)
            questions[split] |= {p.question for p in problems}
    assert not questions["train"] & questions["validation"]
    assert not questions["train"] & questions["test"]
    assert not questions["validation"] & questions["test"]


def test_split_buckets_are_about_80_10_10():
    counts = {s: 0 for s in SPLITS}
    for i in range(10_000):
        counts[split_of(f"question {i}")] += 1
    assert 7700 < counts["train"] < 8300 and 800 < counts["validation"] < 1200 and 800 < counts["test"] < 1200


def test_last_letter_lengths_in_and_out_of_distribution():
    task = get_task("last_letter")
    in_dist = task.generate("train", 200, seed=0)
    assert {len(p.meta["words"]) for p in in_dist} == {2, 3, 4}
    ood = task.generate(OOD, 100, seed=0)
    assert all(len(task.words(p)) == 6 for p in ood)
    assert all(p.answer == "".join(w[-1] for w in task.words(p)) for p in ood)
    assert not {p.question for p in ood} & {p.question for p in in_dist}


def test_word_sort_ood_lists_are_longer():
    task = get_task("word_sort")
    assert {len(task.words(p)) for p in task.generate("test", 100)} == {3, 4, 5}
    assert {len(task.words(p)) for p in task.generate(OOD, 20)} == {7}


def test_bad_generate_arguments_fail_clearly():
    with pytest.raises(ValueError, match="no split 'ood'.*'train', 'validation', 'test'"):
        get_task("arithmetic").generate(OOD, 5)
    with pytest.raises(ValueError, match="no split 'dev'"):
        get_task("last_letter").generate("dev", 5)
    with pytest.raises(ValueError, match="non-negative int"):
        get_task("last_letter").generate("train", -1)
    assert get_task("last_letter").generate("train", 0) == []


class _TinyTask(Task):
    """A task with only 40 distinct questions, to hit the capacity check."""

    name = "tiny"

    def _sample(self, rng, ood):
        return f"What is {rng.randrange(40)}?", "0", {}


def test_asking_more_than_a_split_holds_is_an_error_not_a_hang():
    task = _TinyTask()
    holds = sum(split_of(f"What is {i}?") == "train" for i in range(40))
    assert len(task.generate("train", holds)) == holds
    with pytest.raises(ValueError, match=f"asked for {holds + 1} train problems but found only {holds}"):
        task.generate("train", holds + 1)


def test_gsm8k_has_no_generator():
    with pytest.raises(NotImplementedError, match="no generator.*load"):
        get_task("gsm8k").generate("train", 1)


# ---- reference solutions --------------------------------------------------------------------------


def test_last_letter_reference_solution_format():
    task = get_task("last_letter")
    problem = task.make_problem(task.question(["pako", "rin", "tas"]), "ons")
    assert task.reference_solution(problem) == (
        'The last letter of "pako" is "o".\n'
        'The last letter of "rin" is "n".\n'
        'The last letter of "tas" is "s".\n'
        'Concatenating "o", "n" and "s" gives "ons".\n'
        "The answer is ons."
    )


@pytest.mark.parametrize("name", GENERATED)
def test_reference_solutions_are_right_by_an_independent_check(name):
    task = get_task(name)
    for p in task.generate("train", 200, seed=1) + task.generate("test", 50, seed=1):
        solution = task.reference_solution(p)
        assert final_answer_line(solution) == p.answer
        assert task.is_correct(solution, p)
        if name == "last_letter":
            assert p.answer == "".join(w[-1] for w in p.question.split('"')[1].split())
        elif name == "word_sort":
            assert p.answer.split() == sorted(p.question.split('"')[1].split())
        else:
            equations = re.findall(r"(\d+) ([-+*/]) (\d+) = (\d+)", solution)
            assert 2 <= len(equations) <= 5
            for a, op, b, c in equations:
                assert eval(f"{a} {op} {b}") == int(c)  # noqa: S307 (digits and one operator)
            assert equations[-1][3] == p.answer


def test_arithmetic_has_several_templates_and_2_to_5_steps():
    task = get_task("arithmetic")
    problems = task.generate("train", 500, seed=0)
    assert len({p.meta["template"] for p in problems}) >= 8
    steps = {task.reference_solution(p).count("\n") for p in problems}
    assert steps == {2, 3, 4, 5}


# ---- answer extraction and grading --------------------------------------------------------------

MATH_OUTPUTS = [
    ("The answer is 72.", "72"),
    ("The answer is: 72", "72"),
    ("so the final answer is 1,234.", "1234"),
    ("The answer is $1,234.50.", "1234.5"),
    ("The answer is 12 apples.", "12"),
    ("The answer is **12**.", "12"),
    ('  The answer is "12"  ', "12"),
    ("The answer is -3.", "-3"),
    ("The answer is 12.00", "12"),
    ("The answer is 0.5 hours", "0.5"),
    ("The answer is \\boxed{42}.", "42"),
    ("Thus x = \\boxed{3.5}", "3.5"),
    ("48+24 = 72\n#### 72", "72"),
    ("#### 1,000", "1000"),
    ("Let me count.\nA: 17", "17"),
    ("The answer is 12.\n\nQ: What is 2 + 2?\nA: Let's think step by step.\nThe answer is 4.", "12"),
    ("Answer: 17 marbles", "17"),
    ("The answer is 4 * 4 = 16.", "16"),
    ("The answer is 4*4 = 16 = 16 classes.", "16"),
    ("The answer is 5 (since 3 = 3).", "5"),
    ("The answer is 5.\nWait, that is wrong. The answer is 6.", "6"),
    ("The answer is:\n42", "42"),
    # no announced answer, or an announcement without a number: None, never a guess
    ("48 + 24 = 72 clips in total", None),
    ("I think it is 42", None),
    ("The answer is", None),
    ("The answer is twelve.", None),
    ("The answer is 5.\nThe answer is unknown.", None),
    ("", None),
]


@pytest.mark.parametrize("text, expected", MATH_OUTPUTS)
def test_math_answer_extraction(text, expected):
    assert get_task("arithmetic").extract_answer(text) == expected
    assert get_task("gsm8k").extract_answer(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is ons.", "ons"),
        ('The answer is "ONS".', "ons"),
        ("The answer is o n s", "ons"),
        ("the answer is: ons\n", "ons"),
        ("The answer is `ons`!", "ons"),
        ("The answer is ons. Concatenating gives xyz.", "ons"),
        ("#### ons", "ons"),
        ('Concatenating "o" and "n" gives "on".', None),
        ("The answer is 42.", None),
        ("The answer is", None),
    ],
)
def test_letters_answer_extraction(text, expected):
    assert get_task("last_letter").extract_answer(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is ka lumira pato.", "ka lumira pato"),
        ("The answer is Ka,  Lumira, pato", "ka lumira pato"),
        ('The answer is "ka lumira pato".', "ka lumira pato"),
        ("Answer: ka lumira pato", "ka lumira pato"),
        ("Word 1 in alphabetical order is \"ka\".", None),
        ("The answer is ka 2 pato.", None),
    ],
)
def test_words_answer_extraction(text, expected):
    assert get_task("word_sort").extract_answer(text) == expected


def test_numeric_and_normalized_string_equality():
    arith = get_task("arithmetic")
    p = arith.make_problem("q", "12")
    for text in ["The answer is 12.", "The answer is 12.0", "The answer is 12.00.", "#### 12", "\\boxed{12}"]:
        assert arith.is_correct(text, p), text
    assert not arith.is_correct("The answer is 12.5", p)
    assert not arith.is_correct("The answer is 120", p)
    letters = get_task("last_letter")
    q = letters.make_problem("q", "ons")
    assert letters.is_correct("The answer is ONS.", q) and letters.is_correct("The answer is o n s", q)
    assert not letters.is_correct("The answer is nos.", q)


IVY = "Ivy has $127. Ivy buys 5 books that cost $7 each. How much money does Ivy have left?"
LETTERS, WORDS, ARITH, GSM8K = (get_task(n) for n in ["last_letter", "word_sort", "arithmetic", "gsm8k"])
FIXED_PROBLEMS = [
    (LETTERS, LETTERS.make_problem(LETTERS.question(["pako", "rin", "tas"]), "ons")),
    (WORDS, WORDS.make_problem(WORDS.question(["lumira", "ka"]), "ka lumira")),
    (ARITH, ARITH.make_problem(IVY, "92")),
    (GSM8K, GSM8K.make_problem("How many?", "12", {"solution": "5 + 7 = 12"})),
]
# Free-form model output: pieces of the answer and step formats mixed with arbitrary text.
FRAGMENTS = st.sampled_from([
    "The answer is ", "the final answer is: ", "#### ", "\\boxed{", "}", "\nA: ", "Answer:", "\n", ". ", " ",
    "=", " * ", " + ", "-", "/", "$", ",", "(", ")", '"', "12", "1,234", "0.5", "7", "ons", "ka lumira", "Ons",
    'The last letter of "pako" is "o".', "Concatenating gives ", 'Word 1 in alphabetical order is "ka".',
    "5 * 7 = 35", "127 - 35 = 92", "The answer is ons.", "The answer is ka lumira.", "The answer is 92.",
    "#### 12", "Step 1:", "Verification: Is the answer correct (Yes/No)? Yes",
])  # fmt: skip
GARBAGE = st.lists(FRAGMENTS | st.text(max_size=12), max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(GARBAGE)
def test_extraction_and_rationales_survive_garbage(text):
    for task, problem in FIXED_PROBLEMS:
        answer = task.extract_answer(text)
        assert answer is None or answer == task.normalize_answer(answer)
        rationale = task.verification_rationale(problem, text)
        assert rationale.split("\n")[-1] == (YES_LINE if task.is_correct(text, problem) else NO_LINE)


# ---- rationales and candidates ------------------------------------------------------------------


@pytest.mark.parametrize("name", GENERATED)
def test_candidates_and_rationales_agree_with_the_grade(name):
    """Thousands of candidates per task: the grade matches an independent reading of the answer
    line, and every rationale's verdict equals the grade."""
    task = get_task(name)
    rng = random.Random(0)
    kinds, count = {}, 0
    for p in task.generate("train", 250, seed=7) + task.generate("test", 50, seed=7):
        reference = task.reference_solution(p)
        candidates = task.candidate_solutions(p, 10, rng)
        assert candidates[0].solution == reference and candidates[0].kind == "reference"
        assert len({c.solution for c in candidates}) == len(candidates)
        for c in candidates:
            count += 1
            kinds.setdefault(c.kind, [0, 0])[c.correct] += 1
            assert c.correct == task.is_correct(c.solution, p)
            truth = final_answer_line(c.solution)
            assert c.correct == (truth is not None and task.normalize_answer(truth) == p.answer)
            rationale = task.verification_rationale(p, c.solution)
            lines = rationale.split("\n")
            assert lines[-1] == (YES_LINE if c.correct else NO_LINE)
            assert rationale.count(DIRECT_QUESTION) == 1
            assert len(lines) <= reference.count("\n") + 5  # one line per step, plus the summary
            if c.kind == "reference":
                assert "Wrong" not in rationale and "skips" not in rationale
            if c.kind == "truncated":
                assert not c.correct
    assert count >= 2500
    assert set(kinds) == {"reference", *task.perturbation_kinds()}
    for kind, (wrong, right) in kinds.items():
        assert (right if kind in ("reference", "commuted") else wrong) > 0, kind
    if name == "arithmetic":
        assert kinds["commuted"][0] == 0  # swapping operands of + and * never changes a result


def test_problems_pickle_and_hash():
    import pickle

    p = get_task("last_letter").generate("train", 1)[0]
    assert pickle.loads(pickle.dumps(p)) == p
    assert {p: 1}[p] == 1


def test_candidates_are_deterministic_for_a_seeded_rng():
    task = get_task("arithmetic")
    p = task.generate("train", 1)[0]
    assert task.candidate_solutions(p, 8, random.Random(5)) == task.candidate_solutions(p, 8, random.Random(5))
    assert task.candidate_solutions(p, 0, random.Random(5)) == []


def test_last_letter_rationale_names_the_first_wrong_step():
    task = get_task("last_letter")
    p = task.make_problem(task.question(["pako", "rin", "tas"]), "ons")
    wrong_letter = (
        'The last letter of "pako" is "o".\nThe last letter of "rin" is "i".\nThe last letter of "tas" is "s".\n'
        'Concatenating "o", "i" and "s" gives "ois".\nThe answer is ois.'
    )
    assert task.verification_rationale(p, wrong_letter) == "\n".join([
        'Step 1: the solution says the last letter of "pako" is "o"; the last letter of "pako" is "o". Correct.',
        'Step 2: the solution says the last letter of "rin" is "i"; the last letter of "rin" is "n". Wrong.',
        'Step 3: the solution says the last letter of "tas" is "s"; the last letter of "tas" is "s". Correct.',
        'Step 4: the solution says the letters give "ois"; "o", "n" and "s" give "ons". Wrong.',
        "The first wrong step is step 2.",
        'Final answer: the solution says "ois"; the correct answer is "ons". Wrong.',
        NO_LINE,
    ])  # fmt: skip
    skipped = 'The last letter of "pako" is "o".\nThe last letter of "tas" is "s".\nThe answer is os.'
    rationale = task.verification_rationale(p, skipped)
    assert 'Step 2: the solution skips "rin"; the last letter of "rin" is "n". Wrong.' in rationale
    assert 'Step 4: the solution skips the concatenation; "o", "n" and "s" give "ons". Wrong.' in rationale
    assert "first wrong step is step 2." in rationale
    # The verdict is about the final answer: a wrong step with a right answer still says Yes.
    lucky = wrong_letter.replace("The answer is ois.", "The answer is ons.")
    rationale = task.verification_rationale(p, lucky)
    assert "first wrong step is step 2." in rationale and rationale.endswith(YES_LINE)
    wrong_final = task.reference_solution(p).replace("The answer is ons.", "The answer is on.")
    rationale = task.verification_rationale(p, wrong_final)
    assert "first wrong step" not in rationale and rationale.endswith(NO_LINE)
    right = task.verification_rationale(p, task.reference_solution(p)).split("\n")
    assert right[-2:] == ['Final answer: the solution says "ons"; the correct answer is "ons". Correct.', YES_LINE]
    assert task.verification_rationale(p, "").split("\n")[-2] == (
        'Final answer: the solution skips it; the correct answer is "ons". Wrong.'
    )


def test_arithmetic_rationale_follows_a_carried_slip():
    task = get_task("arithmetic")
    p = task.make_problem(IVY, "92")
    slip = "The books cost 5 * 7 = 36 dollars.\nIvy has 127 - 36 = 91 dollars left.\nThe answer is 91."
    # A wrong result is recomputed from the solution's own left-hand side; a step whose arithmetic
    # holds on a carried value shows the reference step, so the operand that is off is visible.
    assert task.verification_rationale(p, slip) == "\n".join([
        "Step 1: the solution says 5 * 7 = 36; 5 * 7 = 35. Wrong.",
        "Step 2: the solution says 127 - 36 = 91; 127 - 35 = 92. Wrong.",
        "The first wrong step is step 1.",
        "Final answer: the solution says 91; the correct answer is 92. Wrong.",
        NO_LINE,
    ])  # fmt: skip
    free_form = "5 books at $7 is 5x7=35, and 127-35=92 is left, so #### 92"
    rationale = task.verification_rationale(p, free_form)
    assert "Wrong" not in rationale and rationale.endswith(YES_LINE)
    assert rationale.split("\n")[:2] == [  # quoted as written, recomputed in the canonical form
        "Step 1: the solution says 5x7=35; 5 * 7 = 35. Correct.",
        "Step 2: the solution says 127-35=92; 127 - 35 = 92. Correct.",
    ]
    early = "The books cost 5 * 7 = 35 dollars.\nThe answer is 35."
    assert "Step 2: the solution skips this step; 127 - 35 = 92. Wrong." in task.verification_rationale(p, early)
    extra = slip.replace("36", "35").replace("91", "92").replace("The answer", "So 92 + 0 = 92.\nThe answer")
    rationale = task.verification_rationale(p, extra)
    assert "Step 3 (extra): the solution says 92 + 0 = 92; 92 + 0 = 92. Correct." in rationale
    assert "Wrong" not in rationale and rationale.endswith(YES_LINE)


def test_word_sort_rationale_checks_each_position():
    task = get_task("word_sort")
    p = task.make_problem(task.question(["pato", "lumira", "ka"]), "ka lumira pato")
    swapped = (
        'Word 1 in alphabetical order is "ka".\nWord 2 in alphabetical order is "pato".\n'
        'Word 3 in alphabetical order is "lumira".\nThe answer is ka pato lumira.'
    )
    rationale = task.verification_rationale(p, swapped)
    assert rationale.split("\n")[:3] == [
        'Step 1: the solution says word 1 is "ka"; word 1 is "ka". Correct.',
        'Step 2: the solution says word 2 is "pato"; word 2 is "lumira". Wrong.',
        'Step 3: the solution says word 3 is "lumira"; word 3 is "pato". Wrong.',
    ]
    assert "first wrong step is step 2." in rationale and rationale.endswith(NO_LINE)
    short = 'Word 1 in alphabetical order is "ka".\nThe answer is ka.'
    assert "Step 2: the solution skips word 2; word 2 is \"lumira\". Wrong." in task.verification_rationale(p, short)
    extra = swapped.replace("The answer", 'Word 4 in alphabetical order is "zo".\nThe answer')
    rationale = task.verification_rationale(p, extra)
    assert 'Extra step: the solution says word 4 is "zo"; the list has 3 words. Wrong.' in rationale


# A checked line copies the solution's claim, then the recomputed value, then the verdict; a skipped
# step says so. Anything else in a step line would be text written without reading the solution.
CHECK_LINE = re.compile(
    r"(?:Step \d+(?: \(extra\))?|Extra step|Final answer): the solution says (?P<claim>.+?); "
    r"(?P<recomputed>.+)\. (?P<verdict>Correct|Wrong)\."
)
SKIP_LINE = re.compile(r"(?:Step \d+|Final answer): the solution skips .+?; .+\. Wrong\.")


def claims_of(name: str, solution: str) -> list[str]:
    """Independent oracle: what each step of a task-written solution claims (a truncated last line
    included, as far as it goes), in the words the rationale quotes it in (math: as written)."""
    if name == "last_letter":
        steps = re.findall(r'^The last letter of "([a-z]+)" is "([a-z])', solution, re.MULTILINE)
        concat = re.findall(r'^Concatenating .* gives "([a-z]+)', solution, re.MULTILINE)
        return [f'the last letter of "{w}" is "{c}"' for w, c in steps] + [f'the letters give "{c}"' for c in concat]
    if name == "word_sort":
        steps = re.findall(r'^Word (\d+) in alphabetical order is "([a-z]+)', solution, re.MULTILINE)
        return [f'word {n} is "{w}"' for n, w in steps]
    if name == "arithmetic":  # the generator writes "a op b = c" with single spaces
        number = r"-?\d+(?:\.\d+)?"
        return re.findall(rf"(?<![\d.]){number} [-+*/] {number} = {number}", solution)
    raise ValueError(name)


def compared_value(text: str):
    """The value a check-line half ends on: its last quoted string, or the number after its last "="
    (else its last number), so Correct/Wrong can be read off as a comparison of the two halves."""
    quoted = re.findall(r'"([^"]*)"', text)
    if quoted:
        return quoted[-1]
    numbers = re.findall(r"-?(?:\d[\d,]*)?\.?\d+", text.rpartition("=")[2] or text)
    return Fraction(Decimal(numbers[-1].replace(",", ""))) if numbers else None


@pytest.mark.parametrize("name", [*GENERATED, "gsm8k"])
def test_every_step_line_quotes_the_solutions_claim(name):
    """For every candidate kind, each step line of the rationale quotes what the solution claims at
    that step (so two solutions with different claims get different lines: the rationale cannot be
    written from the question alone), and its verdict is Correct exactly when the quoted value
    equals the recomputed one."""
    task = get_task(name)
    problems = task.load(GSM8K_HEAD)[:50] if name == "gsm8k" else task.generate("train", 50, seed=3)
    rng, kinds = random.Random(0), set()
    for p in problems:
        for c in task.candidate_solutions(p, 10, rng):
            kinds.add(c.kind)
            lines = task.verification_rationale(p, c.solution).split("\n")[:-1]
            checks = []
            for line in lines:
                if line.startswith(("Step ", "Extra step", "Final answer")):
                    m = CHECK_LINE.fullmatch(line)
                    assert m or SKIP_LINE.fullmatch(line), (c.kind, line)
                    if m:
                        same = compared_value(m["claim"]) == compared_value(m["recomputed"])
                        assert (m["verdict"] == "Correct") == same, (c.kind, line)
                        checks.append(m["claim"])
            final = lines[-1]
            assert final.startswith("Final answer:")
            quoted = checks[:-1] if CHECK_LINE.fullmatch(final) else checks
            if name == "gsm8k":  # GSM8K's own wording: each equation quoted verbatim, in order
                assert len(quoted) == len(find_equations(c.solution))
                at = 0
                for claim in quoted:
                    at = c.solution.index(claim, at) + len(claim)
            else:
                assert quoted == claims_of(name, c.solution), (c.kind, c.solution, lines)
    assert kinds == {"reference", *task.perturbation_kinds()}


@pytest.mark.parametrize("name", GENERATED)
def test_every_truncation_of_a_reference_is_graded_and_verified_consistently(name):
    task = get_task(name)
    for p in task.generate("validation", 20, seed=2):
        reference = task.reference_solution(p)
        answer_at = reference.rindex("The answer is")
        for cut in range(len(reference) + 1):
            prefix = reference[:cut]
            correct = task.is_correct(prefix, p)
            if cut < answer_at + len("The answer is "):
                assert not correct
            assert task.verification_rationale(p, prefix).endswith(YES_LINE if correct else NO_LINE)
        assert task.is_correct(reference.rstrip("."), p)


# ---- loading files ------------------------------------------------------------------------------


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize("name", GENERATED)
def test_load_round_trips_generated_problems_without_meta(name, tmp_path):
    task = get_task(name)
    problems = task.generate("test", 30, seed=0)
    rows = [json.dumps({"question": p.question, "answer": p.answer}) for p in problems]
    path = write_lines(tmp_path / "p.jsonl", rows)
    loaded = task.load(path)
    assert [(p.id, p.question, p.answer) for p in loaded] == [(p.id, p.question, p.answer) for p in problems]
    rng = random.Random(0)
    for original, p in zip(problems, loaded):
        assert dict(p.meta) == {}
        # Everything works from the question and answer alone.
        assert task.reference_solution(p) == task.reference_solution(original)
        for c in task.candidate_solutions(p, 4, rng):
            assert task.verification_rationale(p, c.solution) == task.verification_rationale(original, c.solution)


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"question": "q", "answer": "12"}', '{"question": "q2", "answer": '], r"p\.jsonl:2: malformed JSON"),
        (['{"question": "q"}'], r"p\.jsonl:1: missing field 'answer'"),
        (['{"answer": "12"}'], r"p\.jsonl:1: missing field 'question'"),
        (['{"question": "q", "answer": 12}'], r"p\.jsonl:1: field 'answer' must be a string, got int"),
        (['{"question": ["q"], "answer": "12"}'], r"p\.jsonl:1: field 'question' must be a string, got list"),
        (['{"question": "  ", "answer": "12"}'], r"p\.jsonl:1: field 'question' is empty"),
        (['["q", "12"]'], r"p\.jsonl:1: expected a JSON object, got list"),
        (["", '{"question": "q", "answer": "twelve"}'], r"p\.jsonl:2: field 'answer' is not a valid arithmetic answer"),
        ([], r"p\.jsonl: no problems"),
    ],
)
def test_bad_files_name_file_line_and_field(tmp_path, lines, message):
    path = write_lines(tmp_path / "p.jsonl", lines)
    with pytest.raises(ValueError, match=message):
        get_task("arithmetic").load(path)


def test_loaded_letter_answers_are_validated(tmp_path):
    rows = ['{"question": "q", "answer": "o n"}', '{"question": "q", "answer": "o1"}']
    path = write_lines(tmp_path / "p.jsonl", rows)
    with pytest.raises(ValueError, match=r"p\.jsonl:2: field 'answer'"):
        get_task("last_letter").load(path)


def test_questions_outside_the_generators_are_still_graded_and_verified():
    for name, answer, good in [("last_letter", "ab", "The answer is ab."), ("arithmetic", "7", "#### 7")]:
        task = get_task(name)
        p = Problem(id="x", task=name, question="A question in some other wording?", answer=answer)
        assert task.is_correct(good, p)
        assert task.verification_rationale(p, good).endswith(YES_LINE)
        assert task.verification_rationale(p, "The answer is zz 9.").endswith(NO_LINE)


# ---- rationale formats --------------------------------------------------------------------------


def chains_hold(recomputed: str) -> bool:
    """Independent reading of a recomputation: within each chain ("a, so b" has two) every
    "="-separated part evaluates to the same number."""
    from genrm_ray.tasks.mathtext import evaluate

    for chain in recomputed.split(", so "):
        values = [evaluate(part) for part in chain.split(" = ")]
        if None in values or len(set(values)) != 1:
            return False
    return True


@given(st.integers(0, 5000), st.sampled_from("+-*/"), st.integers(1, 500))
def test_decomposed_recomputation_is_a_true_chain_ending_on_the_value(a, op, b):
    from genrm_ray.tasks.mathtext import worked

    quoted = worked(Fraction(a), op, Fraction(b))
    decomposed = worked(Fraction(a), op, Fraction(b), "decomposed")
    value = quoted.rpartition(" = ")[2]
    assert quoted.startswith(f"{a} {op} {b} = ") and quoted.count("=") == 1
    assert decomposed.endswith(f"{a} {op} {b} = {value}") or decomposed.startswith(f"{a} {op} {b} = ")
    assert decomposed.rpartition(" = ")[2] == value
    if decomposed != quoted:
        assert chains_hold(decomposed), decomposed
    exact = {"+": a + b, "-": a - b, "*": a * b, "/": Fraction(a, b)}[op]
    # The factor worked() splits: b for + and -; for *, the shorter one (the other when one has a
    # single digit); it splits only when that factor has two or more non-zero place values.
    shorter_left = b < 10 or (a >= 10 and len(str(a)) < len(str(b)))
    split = a if op == "*" and shorter_left else b
    splits = sum(d != "0" for d in str(split)) > 1 and not (op == "*" and a < 10 and b < 10)
    if exact.denominator == 1 and exact >= 0 and op in "+-*" and splits:
        assert decomposed.count("=") >= 3  # split into place-value parts


def test_decomposed_format_examples_and_unknown_format():
    from genrm_ray.tasks.mathtext import worked

    F = Fraction
    assert worked(F(161), "*", F(23), "decomposed") == "161 * 23 = 161 * 20 + 161 * 3 = 3220 + 483 = 3703"
    assert worked(F(161), "*", F(3), "decomposed") == "161 * 3 = 100 * 3 + 60 * 3 + 1 * 3 = 300 + 180 + 3 = 483"
    assert worked(F(161), "-", F(28), "decomposed") == "161 - 28 = 161 - 20 - 8 = 141 - 8 = 133"
    assert worked(F(3220), "/", F(7), "decomposed") == "460 * 7 = 3220, so 3220 / 7 = 460"
    assert worked(F(7), "*", F(8), "decomposed") == "7 * 8 = 56"  # nothing to split
    assert worked(F(7), "/", F(2), "decomposed") == "7 / 2 = 3.5"  # not integral: stays quoted
    with pytest.raises(ValueError, match="unknown rationale format 'terse'"):
        worked(F(1), "+", F(12), "terse")


@pytest.mark.parametrize("name", ["arithmetic", "gsm8k"])
def test_decomposed_rationales_keep_every_claim_and_verdict(name):
    """Against the quoted rationale of the same candidate: the same lines, each quoting the same claim
    and ending on the same verdict; only the recomputation between them is worked out."""
    task = get_task(name)
    assert task.rationale_formats == ("quoted", "decomposed", "lastdigit")
    problems = task.generate("train", 120, seed=3) if name == "arithmetic" else task.load(GSM8K_HEAD)
    rng, longer = random.Random(0), 0
    for p in problems:
        for c in task.candidate_solutions(p, 6, rng):
            quoted = task.verification_rationale(p, c.solution).split("\n")
            decomposed = task.verification_rationale(p, c.solution, rationale_format="decomposed").split("\n")
            assert len(quoted) == len(decomposed) and quoted[-2:] == decomposed[-2:]  # final answer, verdict
            for q, d in zip(quoted, decomposed):
                claim_q, _, rest_q = q.partition("; ")
                claim_d, _, rest_d = d.partition("; ")
                assert claim_q == claim_d
                assert rest_q.rsplit(". ", 1)[-1] == rest_d.rsplit(". ", 1)[-1]  # Correct. / Wrong.
                if rest_d != rest_q:
                    longer += 1
                    recomputed = rest_d.rsplit(". ", 1)[0]
                    assert chains_hold(recomputed), recomputed
    assert longer > 50


def test_tasks_without_math_reject_the_decomposed_format():
    from genrm_ray.config import ConfigError
    from genrm_ray.data.build import check_rationale_format

    check_rationale_format("arithmetic", "decomposed")
    for name in ("last_letter", "word_sort"):
        assert get_task(name).rationale_formats == ("quoted",)
        with pytest.raises(ConfigError, match=rf"data.rationale_format: task '{name}' writes rationales as quoted"):
            check_rationale_format(name, "decomposed")


@given(st.integers(0, 5000), st.sampled_from("+-*/"), st.integers(1, 500), st.integers(-3, 3))
def test_last_digit_check_passes_exactly_when_the_last_digit_is_right(a, op, b, slip):
    """A true claim always passes; a claim off by a slip passes iff the slip keeps its last digit."""
    from genrm_ray.tasks.mathtext import find_equations, last_digit_check

    if op == "-" and a < b:
        a, b = b, a
    if op == "/":
        a = a * b  # whole quotients only
    true = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b else 0}[op]
    claimed = true + slip
    if claimed < 0:
        return
    (eq,) = find_equations(f"It is {a} {op} {b} = {claimed} here.")
    text, passes = last_digit_check(eq)
    assert "so it ends in" in text
    if op == "/":
        assert passes == ((claimed * b) % 10 == a % 10)
    else:
        assert passes == (slip % 10 == 0)


@pytest.mark.parametrize("name", ["arithmetic", "gsm8k"])
def test_last_digit_rationales_name_no_reference_and_say_yes_only_when_every_check_passes(name):
    """lastdigit: no line states the correct answer; right solutions always get Yes; a wrong solution
    gets No when a step's last digit or its final answer is off, and Yes otherwise (a wrong setup)."""
    from genrm_ray.tasks.mathtext import find_equations, format_number

    task = get_task(name)
    problems = task.generate("train", 80, seed=4) if name == "arithmetic" else task.load(GSM8K_HEAD)
    rng, caught = random.Random(0), 0
    for p in problems:
        for c in task.candidate_solutions(p, 6, rng):
            text = task.verification_rationale(p, c.solution, rationale_format="lastdigit")
            assert "correct answer" not in text
            yes = text.endswith(DIRECT_QUESTION + YES)
            lines = text.split("\n")[:-1]
            assert yes == all(line.endswith("Correct.") for line in lines)
            answer = task.extract_answer(c.solution)
            eqs = find_equations(c.solution)
            if c.correct and answer is not None and all(eq.holds for eq in eqs) and any(
                    task.answers_equal(answer, format_number(eq.claimed)) for eq in eqs):
                assert yes, text  # a right answer from true steps, one of which computes it
            caught += not c.correct and not yes
    assert caught > 20
    slip = task.verification_rationale(Problem("x", name, "Q", "342"), "So 18 * 19 = 349.\nThe answer is 349.",
                                       rationale_format="lastdigit")
    assert "last digits 8 * 9 = 72, so it ends in 2; 349 ends in 9. Wrong." in slip and slip.endswith(NO)
