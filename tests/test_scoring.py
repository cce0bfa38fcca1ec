"""GenRM scoring: direct p(Yes), CoT majority voting, unfinished rationales, adaptive K.

The control-flow tests use a scripted backend (a test double implementing GenerationBackend with
canned rationales and probabilities) so that voting and stopping can be checked exactly; the
real-engine tests at the end run the same code on the tiny model through vLLM and transformers.
"""

import math

import pytest

from genrm_ray import prompts
from genrm_ray.engine import Completion
from genrm_ray.models import train_tokenizer
from genrm_ray.scoring import CotConfig, GenRMScorer, VerifyItem, check_cot, settled

TOKENIZER = train_tokenizer(["Verification"], vocab_size=None, phrases=prompts.TOKENIZER_PHRASES)


class ScriptedBackend:
    """Rationale i of an item says "p=<x>" and ends with the question; p(Yes) after it is x."""

    def __init__(self, script: dict[str, list[float | None]]):
        self.tokenizer = TOKENIZER
        self.script = script  # solution -> p(Yes) of each successive rationale (None: unfinished)
        self.drawn: dict[str, int] = {}
        self.calls: list[tuple[int, int]] = []  # (prompts, n) per generate call

    def generate(self, prompt_list, *, n=1, temperature=1.0, top_p=1.0, max_tokens=256, stop=None, seed=None):
        self.calls.append((len(prompt_list), n))
        out = []
        for p in prompt_list:
            solution = p.split("A: Let's think step by step.\n")[1].split("\n")[0]
            row = []
            for _ in range(n):
                j = self.drawn.get(solution, 0)
                self.drawn[solution] = j + 1
                x = self.script[solution][j]
                text = f"step check p={x}" + ("" if x is None else "\n" + prompts.DIRECT_QUESTION + " Yes")
                row.append(Completion(text=text, token_ids=[1] * 5, finish_reason="stop"))
            out.append(row)
        return out

    def next_token_logprobs(self, prompt_list, token_ids):
        assert list(token_ids) == list(prompts.yes_no_token_ids(TOKENIZER))
        res = []
        for p in prompt_list:
            assert p.endswith("\n" + prompts.DIRECT_QUESTION)
            x = float(p.rsplit("p=", 1)[1].split("\n")[0])
            res.append([math.log(x) if x > 0 else -math.inf, math.log(max(1e-9, (1 - x) / 2))])
        return res


def item(solution):
    return VerifyItem("last_letter", 'Take the last letters of the words in "ab cd" and concatenate them.', solution)


def test_majority_vote_is_the_mean_and_unfinished_counts_as_documented():
    backend = ScriptedBackend({"s1": [0.9, 0.5, 0.1, None], "s2": [0.2, 0.2, 0.2, 0.2]})
    scorer = GenRMScorer(backend)
    s1, s2 = scorer.score_cot([item("s1"), item("s2")], CotConfig(k=4, unfinished_p_yes=0.0), return_rationales=True)
    assert s1.p_yes == pytest.approx([0.9, 0.5, 0.1, 0.0])
    assert s1.reward == pytest.approx(0.375) and s1.unfinished == 1 and s1.k_used == 4
    assert s2.reward == pytest.approx(0.2) and s2.unfinished == 0
    assert s1.rationales[0].endswith(prompts.DIRECT_QUESTION) and not s1.rationales[3].endswith(prompts.DIRECT_QUESTION)
    assert s1.rationale_tokens == 20
    assert backend.calls == [(2, 4)]  # fixed K: one request with n=K for all items


def test_unfinished_value_is_configurable_and_validated():
    backend = ScriptedBackend({"s": [None, None]})
    (s,) = GenRMScorer(backend).score_cot([item("s")], CotConfig(k=2, unfinished_p_yes=0.5))
    assert s.reward == 0.5 and s.unfinished == 2
    with pytest.raises(ValueError, match="cot.unfinished_p_yes must be a probability"):
        check_cot(CotConfig(unfinished_p_yes=2.0))
    with pytest.raises(ValueError, match="probability"):  # the scorer checks what it is given
        GenRMScorer(backend).score_cot([item("s")], CotConfig(k=2, unfinished_p_yes=2.0))


def test_greedy_voting_is_refused_before_the_engine_sees_it():
    # vLLM rejects n > 1 at temperature 0 deep inside SamplingParams; the settings say why first.
    with pytest.raises(ValueError, match="cot.temperature: temperature=0 .*identical; use k=1"):
        check_cot(CotConfig(k=4, temperature=0.0))
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        check_cot(CotConfig(k=1, temperature=-0.5))
    backend = ScriptedBackend({"s": [0.8]})
    (s,) = GenRMScorer(backend).score_cot([item("s")], CotConfig(k=1, temperature=0.0))
    assert s.k_used == 1


def test_normalized_variant():
    backend = ScriptedBackend({"s": [0.6]})
    (raw,) = GenRMScorer(backend).score_cot([item("s")], CotConfig(k=1))
    backend = ScriptedBackend({"s": [0.6]})
    (norm,) = GenRMScorer(backend, normalize=True).score_cot([item("s")], CotConfig(k=1))
    assert raw.reward == pytest.approx(0.6)
    assert norm.reward == pytest.approx(0.6 / (0.6 + 0.2))


def test_adaptive_k_stops_early_only_when_settled():
    settings = CotConfig(k=8, adaptive=True, min_k=2, round_size=2, tolerance=0.1)
    backend = ScriptedBackend({"sure": [0.95] * 8, "torn": [0.9, 0.1] * 4})
    sure, torn = GenRMScorer(backend).score_cot([item("sure"), item("torn")], settings)
    assert sure.k_used == 2 and sure.reward == pytest.approx(0.95)
    assert torn.k_used == 8 and torn.reward == pytest.approx(0.5)
    # Round 1 draws min_k for both, later rounds only for the unsettled item.
    assert backend.calls == [(2, 2), (1, 2), (1, 2), (1, 2)]


def test_settled_rule():
    s = CotConfig(k=6, adaptive=True, min_k=3, tolerance=0.1)
    assert not settled([0.9, 0.9], s)  # below min_k
    assert settled([0.9, 0.9, 0.9], s)
    assert not settled([0.9, 0.1, 0.9], s)
    assert settled([0.9, 0.1, 0.9, 0.1, 0.9, 0.1], s)  # reached k
    assert not settled([0.9] * 5, CotConfig(k=6))  # fixed K never stops early


def test_direct_scoring_reads_yes_after_the_question():
    class Direct(ScriptedBackend):
        def next_token_logprobs(self, prompt_list, token_ids):
            return [[math.log(0.7), math.log(0.2)] for p in prompt_list if p.endswith(prompts.DIRECT_QUESTION)]

    (s,) = GenRMScorer(Direct({})).score_direct([item("s")])
    assert s.reward == pytest.approx(0.7) and s.k_used == 1 and s.p_yes == [pytest.approx(0.7)]


# --- the same scoring code on a real engine (the session's tiny model) -------------------------

REAL_ITEMS = [
    VerifyItem("last_letter", 'Take the last letters of the words in "bako tisu" and concatenate them.', s)
    for s in ('The last letter of "bako" is "o".\nThe last letter of "tisu" is "u".\nThe answer is ou.', "The answer is ab.")
]


def test_vllm_and_transformers_direct_scores_agree(vllm_backend, hf_backend):
    via_vllm = GenRMScorer(vllm_backend).score_direct(REAL_ITEMS)
    via_hf = GenRMScorer(hf_backend).score_direct(REAL_ITEMS)
    for a, b in zip(via_vllm, via_hf):
        assert 0.0 < a.reward < 1.0
        assert a.reward == pytest.approx(b.reward, abs=1e-3)


def test_cot_scoring_on_vllm_accounts_for_every_rationale(vllm_backend):
    settings = CotConfig(k=3, max_rationale_tokens=24, seed=0)
    scores = GenRMScorer(vllm_backend).score_cot(REAL_ITEMS, settings, return_rationales=True)
    for s in scores:
        assert s.k_used == 3 == len(s.p_yes) == len(s.rationales)
        assert 0.0 <= s.reward <= 1.0 and s.reward == pytest.approx(sum(s.p_yes) / 3)
        assert 0 < s.rationale_tokens <= 3 * 24
        finished = sum(r.endswith(prompts.DIRECT_QUESTION) for r in s.rationales)
        assert s.unfinished == 3 - finished


def test_discriminative_scores_batched_by_length_come_back_in_input_order(tmp_path):
    from genrm_ray.models import create_tiny_model
    from genrm_ray.scoring import DiscriminativeScorer

    model_dir = str(create_tiny_model(tmp_path / "classifier", size="tiny", seed=3, head="classifier"))
    scorer = DiscriminativeScorer(model_dir, batch_size=3)
    texts = [f"Q{i}\n" + "word " * (40 if i % 3 == 0 else i) + "\nVerification: Is the answer correct (Yes/No)?"
             for i in range(8)]
    alone = [DiscriminativeScorer(model_dir, batch_size=1).p_correct([t])[0] for t in texts]
    assert scorer.p_correct(texts) == pytest.approx(alone, abs=1e-5)
    assert len({round(p, 5) for p in alone}) > 1  # distinct scores: a permutation would show
