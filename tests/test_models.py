"""Tokenizer and model factory: single-token phrases, exact round trips, HF save/reload."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from genrm_ray import prompts
from genrm_ray.models import MODEL_SIZES, build_model, count_parameters, resolve_size, save_model, train_tokenizer
from genrm_ray.tasks import get_task
from tests.fixtures.models import task_corpus


def _verify_texts() -> list[str]:
    out = []
    for name in ("last_letter", "word_sort", "arithmetic"):
        task = get_task(name)
        for problem in task.generate("train", 3, seed=1):
            solution = task.reference_solution(problem)
            out.append(prompts.verify_direct_prompt(name, problem.question, solution) + prompts.YES)
            out.append(prompts.verify_cot_prompt(name, problem.question, solution))
    return out


ODD_TEXTS = [
    " Yes",
    " No",
    "  Yes  ",
    "Yes No  Yes.\n No\n",
    "(Yes/No)? Yes",
    "The answer is  No.\nThe answer is\n",
    "héllo wörld 日本語 😀\t\r\n",
    "Nomad Yesterday  Nobody",
    "",
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_yes_no_and_every_phrase_are_single_tokens(tokenizer):
    yes, no = prompts.yes_no_token_ids(tokenizer)
    assert tokenizer.decode([yes]) == " Yes" and tokenizer.decode([no]) == " No"
    for phrase in prompts.TOKENIZER_PHRASES:
        ids = tokenizer.encode(phrase, add_special_tokens=False)
        assert len(ids) == 1, (phrase, ids)


@pytest.mark.parametrize("text", _verify_texts() + ODD_TEXTS)
def test_encode_decode_round_trips_exactly(tokenizer, text):
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id  # prompts start with <s>, as vLLM tokenizes them
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.decode(ids[1:]) == text


def test_verdict_tokenizes_the_same_alone_and_after_the_prompt(tokenizer):
    # Training tokenizes prompt and target separately (prompts.tokenize_pair); generated text is
    # tokenized whole. Both must put the verdict on the same single token.
    yes, _ = prompts.yes_no_token_ids(tokenizer)
    prompt = _verify_texts()[0][: -len(prompts.YES)]
    joint = tokenizer.encode(prompt + prompts.YES)
    assert joint == tokenizer.encode(prompt) + [yes]


def test_phrases_do_not_eat_the_start_of_a_word(tokenizer):
    # The tasks spell out words letter by letter; " No" must not swallow the "No" of " Nomad".
    ids = tokenizer.encode(" Nomad Yesterday", add_special_tokens=False)
    assert len(ids) == len(" Nomad Yesterday")  # one byte token per character
    assert tokenizer.encode(" No Yes", add_special_tokens=False)[0] == prompts.yes_no_token_ids(tokenizer)[1]


def test_byte_level_needs_no_corpus_and_ids_are_byte_values():
    tok = train_tokenizer([], vocab_size=None, phrases=[" Yes", " No"])
    assert len(tok) == 256 + 3 + 2
    assert tok.encode("Az", add_special_tokens=False) == [ord("A"), ord("z")]


def test_learned_merges_shorten_text_and_keep_the_contracts():
    corpus = task_corpus(per_task=30)
    merged = train_tokenizer(corpus, vocab_size=400, phrases=prompts.TOKENIZER_PHRASES)
    plain = train_tokenizer([], vocab_size=None, phrases=prompts.TOKENIZER_PHRASES)
    text = corpus[-1]
    assert len(merged.encode(text)) < 0.8 * len(plain.encode(text))
    assert len(merged) == 400 + 3 + len(set(prompts.TOKENIZER_PHRASES))
    prompts.yes_no_token_ids(merged)
    for t in _verify_texts() + ODD_TEXTS:
        assert merged.decode(merged.encode(t), skip_special_tokens=True) == t


def test_bad_tokenizer_and_size_arguments_fail_clearly():
    with pytest.raises(ValueError, match="vocab_size=100"):
        train_tokenizer([], vocab_size=100, phrases=[])
    with pytest.raises(ValueError, match=r"phrases\[1\]"):
        train_tokenizer([], phrases=[" Yes", ""])
    with pytest.raises(ValueError, match="unknown model size 'huge'"):
        resolve_size("huge")
    with pytest.raises(ValueError, match="unknown model size field"):
        resolve_size({"preset": "tiny", "layers": 3})
    with pytest.raises(ValueError, match="head size 16"):
        resolve_size({"preset": "tiny", "num_attention_heads": 4})
    tok = train_tokenizer([], phrases=[])
    with pytest.raises(ValueError, match="unknown head 'value'"):
        build_model(tok, "tiny", head="value")


def test_presets_span_tiny_to_tens_of_millions():
    tok = train_tokenizer([], phrases=prompts.TOKENIZER_PHRASES)
    counts = {name: count_parameters(build_model(tok, name)) for name in MODEL_SIZES}
    assert 50e3 < counts["tiny"] < 200e3
    assert 0.5e6 < counts["small"] < 2e6
    assert 5e6 < counts["base"] < 20e6
    assert 20e6 < counts["large"] < 60e6
    assert resolve_size({"preset": "small", "num_hidden_layers": 6}).num_hidden_layers == 6


def test_saved_model_reloads_with_transformers(tiny_model_dir, tokenizer):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    generation = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert config["max_position_embeddings"] == MODEL_SIZES["tiny"].max_position_embeddings
    assert config["vocab_size"] == len(tokenizer)
    assert (generation["eos_token_id"], generation["pad_token_id"], generation["bos_token_id"]) == (
        tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id,
    )
    assert (tiny_model_dir / "model.safetensors").is_file()

    reloaded = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    rebuilt = build_model(tokenizer, "tiny", seed=0)  # the fixture's recipe: same seed, same weights
    other = build_model(tokenizer, "tiny", seed=1)
    ids = torch.tensor([tokenizer.encode(_verify_texts()[0])])
    with torch.no_grad():
        a, b, c = (m(ids).logits for m in (reloaded, rebuilt, other))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_classifier_head_saves_and_scores_the_last_real_token(tmp_path):
    tok = train_tokenizer([], phrases=prompts.TOKENIZER_PHRASES)
    save_model(build_model(tok, "tiny", seed=0, head="classifier"), tok, tmp_path / "rm")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm").eval()
    assert model.config.num_labels == 1
    texts = _verify_texts()[:2]
    tok.padding_side = "right"
    batch = tok(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        scores = model(**batch).logits
        alone = torch.cat([model(**tok([t], return_tensors="pt")).logits for t in texts])
    assert scores.shape == (2, 1)
    torch.testing.assert_close(scores, alone, rtol=1e-4, atol=1e-5)
