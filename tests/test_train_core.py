"""Training core on the real stack: Ray Train (2 CPU workers, gloo) + DeepSpeed ZeRO-2/3, wandb
offline, resume after a killed worker, HF export loaded by transformers and vLLM, and every
bad-input case failing before training.

One tiny Llama (byte-level tokenizer with " Yes"/" No" as single tokens) and small SFT files of a
synthetic last-letter task are built once for the module.
"""

from __future__ import annotations

import json
import math
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genrm_ray import prompts
from genrm_ray.config import ConfigError, load_config
from genrm_ray.models import create_tiny_model
from genrm_ray.train import TrainConfig, TrainSetupError, check_setup, run_training
from genrm_ray.train.data import Example, balanced_subset, length_grouped_batches

pytestmark = pytest.mark.integration  # Ray Train + DeepSpeed runs (the module imports ray)
TASK = "last_letter"
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi"]


def _problem(rng: random.Random) -> tuple[str, list[str]]:
    words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 2))) for _ in range(rng.randint(2, 3))]
    return f'Take the last letters of the words in "{" ".join(words)}" and concatenate them.', words


def _solution(words: list[str], wrong: bool) -> str:
    letters = [w[-1] for w in words]
    if wrong:
        letters[-1] = "x"
    steps = "\n".join(f'The last letter of "{w}" is "{c}".' for w, c in zip(words, letters))
    return f"{steps}\nThe answer is {''.join(letters)}."


def _rationale(words: list[str], wrong: bool) -> str:
    check = "the last step is wrong." if wrong else "every step is right."
    return f"Checking each word: {check}\n{prompts.DIRECT_QUESTION}{prompts.verdict_text(not wrong)}"


def write_sft_files(out: Path, n: int = 48, seed: int = 0) -> dict[str, Path]:
    """Balanced verify_direct / verify_cot files and a correct file, in genrm_ray.data.sft's schema."""
    rng = random.Random(seed)
    rows: dict[str, list[dict]] = {"verify_direct": [], "verify_cot": [], "correct": []}
    for i in range(n):
        question, words = _problem(rng)
        wrong = i % 2 == 1
        solution = _solution(words, wrong)
        base = {"task": TASK, "problem_id": f"p{i}", "label": not wrong}
        rows["verify_direct"].append(base | {"kind": "verify_direct", "target": prompts.verdict_text(not wrong),
                                             "prompt": prompts.verify_direct_prompt(TASK, question, solution)})
        rows["verify_cot"].append(base | {"kind": "verify_cot", "target": _rationale(words, wrong),
                                          "prompt": prompts.verify_cot_prompt(TASK, question, solution)})
        if not wrong:
            rows["correct"].append(base | {"kind": "correct", "label": None, "target": solution,
                                           "prompt": prompts.solve_prompt(TASK, question)})
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, records in rows.items():
        paths[kind] = out / f"{kind}.jsonl"
        paths[kind].write_text("".join(json.dumps(r) + "\n" for r in records))
    return paths


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_core")
    files = write_sft_files(root / "data")
    model = create_tiny_model(root / "model", size="tiny")
    return {"root": root, "model": model, **files}


def make_cfg(assets, name: str, *overrides: str) -> TrainConfig:
    base = [
        f"model.path={assets['model']}",
        f"data.verify_direct={assets['verify_direct']}",
        f"data.verify_cot={assets['verify_cot']}",
        f"data.correct={assets['correct']}",
        f"output_dir={assets['root'] / 'runs' / name}",
        "data.max_length=512",
        "train.max_steps=6", "train.micro_batch_size=4", "train.grad_accum=2", "train.lr=3e-3",
        "train.warmup_steps=2", "train.checkpoint_every=3",
        "scaling.num_workers=2", "logging.progress_bar=false",
    ]
    return load_config(TrainConfig, None, base + list(overrides))


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------
# Pure pieces (no Ray)


def test_length_grouped_batches_cover_every_example_once_and_cut_padding():
    rng = random.Random(0)
    lengths = [rng.randint(10, 200) for _ in range(1000)]
    batches = length_grouped_batches(lengths, batch_size=8, seed=0, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert batches == length_grouped_batches(lengths, 8, seed=0, epoch=0)  # deterministic (resume)
    assert batches != length_grouped_batches(lengths, 8, seed=0, epoch=1)

    def pad_share(bs):
        pad = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in bs)
        return pad / (pad + sum(lengths))

    random_order = list(range(1000))
    rng.shuffle(random_order)
    random_batches = [random_order[i : i + 8] for i in range(0, 1000, 8)]
    assert pad_share(batches) < 0.05 < 0.3 < pad_share(random_batches)


def test_balanced_subset_is_seeded_half_yes_half_no_and_zero_means_all():
    examples = [Example([i], [1], float(i % 3 == 0)) for i in range(30)]  # 10 Yes, 20 No
    sub = balanced_subset(examples, 8, seed=0)
    assert len(sub) == 8 and sum(e.label for e in sub) == 4
    assert sub == balanced_subset(examples, 8, seed=0) != balanced_subset(examples, 8, seed=1)
    assert [e.input_ids for e in sub] == sorted(e.input_ids for e in sub)  # original order kept
    assert balanced_subset(examples, 0, seed=0) == examples == balanced_subset(examples, 30, seed=0)
    assert sum(e.label for e in balanced_subset(examples, 26, seed=0)) == 10  # only 10 Yes exist: 10 + 13


def test_max_verify_examples_caps_d_verify_only(assets):
    from transformers import AutoTokenizer

    from genrm_ray.train.loop import _load_sets

    tokenizer = AutoTokenizer.from_pretrained(assets["model"])
    full = _load_sets(make_cfg(assets, "cap"), tokenizer)
    capped = _load_sets(make_cfg(assets, "cap", "data.max_verify_examples=4"), tokenizer)
    assert len(full["verify"]) > 4 and len(capped["verify"]) == 4
    assert sum(e.label for e in capped["verify"]) == 2
    assert len(capped["correct"]) == len(full["correct"])
    with pytest.raises(TrainSetupError, match=r"data\.max_verify_examples must be >= 0 \(0 = all\), got -1"):
        check_setup(make_cfg(assets, "bad", "data.max_verify_examples=-1"))


# ---------------------------------------------------------------------------------------------
# Bad input fails before training


def test_unknown_config_key_and_bad_type_name_the_key(assets):
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.learning_rate'.*valid keys at 'train':.*\blr\b"):
        make_cfg(assets, "bad", "train.learning_rate=1e-3")
    with pytest.raises(ConfigError, match=r"'deepspeed\.zero_stage' must be one of \[2, 3\], got 'three'"):
        make_cfg(assets, "bad", "deepspeed.zero_stage=three")


@pytest.mark.parametrize("stage", [0, 1, 4])
def test_zero_stage_outside_2_3_fails_before_training(assets, stage):
    # The loader rejects it (zero_stage is a Literal) ...
    with pytest.raises(ConfigError, match=rf"'deepspeed\.zero_stage' must be one of \[2, 3\], got {stage}"):
        make_cfg(assets, "bad", f"deepspeed.zero_stage={stage}")
    # ... and check_setup does, for a config built in code.
    cfg = make_cfg(assets, "bad")
    cfg.deepspeed.zero_stage = stage
    with pytest.raises(TrainSetupError, match=rf"deepspeed\.zero_stage must be 2 or 3, got {stage}"):
        check_setup(cfg)


def test_missing_and_malformed_dataset_files(assets, tmp_path):
    with pytest.raises(TrainSetupError, match=r"data\.correct: no such file .*nope\.jsonl"):
        check_setup(make_cfg(assets, "bad", f"data.correct={tmp_path / 'nope.jsonl'}"))
    with pytest.raises(TrainSetupError, match=r"data\.verify_cot is required for objective\.name=genrm"):
        check_setup(make_cfg(assets, "bad", "objective.mode=cot", "data.verify_cot="))
    broken = tmp_path / "broken.jsonl"
    lines = assets["verify_direct"].read_text().splitlines()
    broken.write_text("\n".join(lines[:2] + ['{"kind": "verify_direct", "prompt": '] + lines[3:]) + "\n")
    with pytest.raises(ValueError, match=rf"{broken}:3: not valid JSON"):
        check_setup(make_cfg(assets, "bad", f"data.verify_direct={broken}"))
    wrong_kind = tmp_path / "wrong_kind.jsonl"
    wrong_kind.write_text(assets["correct"].read_text())
    with pytest.raises(ValueError, match=rf"{wrong_kind}:1: kind 'correct' not allowed here"):
        check_setup(make_cfg(assets, "bad", f"data.verify_direct={wrong_kind}"))
    with pytest.raises(ValueError, match=r"record 1: example is \d+ tokens .* over max_length=16"):
        check_setup(make_cfg(assets, "bad", "data.max_length=16"))


def test_tokenizer_without_single_token_yes_no_fails(assets, tmp_path):
    model = create_tiny_model(tmp_path / "no_yes", size="tiny", phrases=[prompts.DIRECT_QUESTION])
    with pytest.raises(TrainSetupError, match=r"splits ' Yes' into \d+ tokens"):
        check_setup(make_cfg(assets, "bad", f"model.path={model}"))
    with pytest.raises(TrainSetupError, match=r"not a Hugging Face model dir"):
        check_setup(make_cfg(assets, "bad", f"model.path={tmp_path}"))


def test_more_workers_than_the_cluster_can_place(assets, ray_cluster):
    with pytest.raises(TrainSetupError, match=r"num_workers=3 x CPU=2.0 needs CPU=6, but the Ray cluster has CPU=4"):
        check_setup(make_cfg(assets, "bad", "scaling.num_workers=3", "scaling.resources_per_worker={CPU: 2}"))
    with pytest.raises(TrainSetupError, match=r"needs GPU=2, but the Ray cluster has GPU=0"):
        check_setup(make_cfg(assets, "bad", "scaling.use_gpu=true"))


def test_ray_cluster_fixture_is_loopback_with_session_token(ray_cluster):
    # The fixture's deliberate auth choice: token auth on, with this session's own token.
    import requests

    assert ray_cluster.address.startswith("127.0.0.1:") and ray_cluster.dashboard_url.startswith("http://127.0.0.1:")
    token = Path(ray_cluster.env["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
    jobs = ray_cluster.dashboard_url + "/api/jobs/"
    assert requests.get(jobs, timeout=10).status_code == 401
    assert requests.get(jobs, headers={"Authorization": "Bearer not-the-token"}, timeout=10).status_code == 403
    assert requests.get(jobs, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200


# ---------------------------------------------------------------------------------------------
# Training runs


def _safetensors_export(export: Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The export's weights, after checking it holds model.safetensors (no pickle) of ``dtype``."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    names = sorted(p.name for p in export.iterdir())
    assert "model.safetensors" in names and not [n for n in names if n.endswith(".bin")], names
    weights = load_file(export / "model.safetensors")
    assert {v.dtype for v in weights.values()} == {dtype}
    assert AutoConfig.from_pretrained(export).dtype == dtype
    return weights


def _assert_losses(metrics: list[dict], lam: float | None):
    for m in metrics:
        if lam:
            assert m["loss"] == pytest.approx(m["loss_verify"] + lam * m["loss_correct"], rel=1e-5)
        elif lam == 0:
            assert "loss_correct" not in m and m["loss"] == pytest.approx(m["loss_verify"])
        assert math.isfinite(m["loss"]) and 0 < m["padding_share"] < 1 and m["tokens"] > 0
    assert metrics[-1]["loss"] < metrics[0]["loss"]  # it learns something in 6 steps


def test_genrm_direct_zero2_lambda_positive_with_wandb(assets, ray_cluster):
    cfg = make_cfg(assets, "direct_z2", "objective.lambda_correct=0.5", "deepspeed.zero_stage=2",
                   "deepspeed.bf16=true")  # the GPU precision, on any CPU: bf16 export of fp32 masters
    result = run_training(cfg)
    metrics = read_metrics(result.run_dir)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    _assert_losses(metrics, lam=0.5)
    assert metrics[0]["lr"] < metrics[1]["lr"]  # warm-up
    assert result.loss_curves["loss_correct"] == [m["loss_correct"] for m in metrics]
    assert result.metrics["step"] == 6 and result.tokens_per_s > 0 and 0 < result.padding_share < 0.5
    assert result.checkpoint and (Path(result.checkpoint) / "ds").is_dir()

    # ZeRO-2 export: bf16 safetensors of the final weights (the bf16 copy of the fp32 master weights
    # in the step-6 checkpoint), the tied lm_head stored once and tied again on load.
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import AutoModelForCausalLM

    weights = _safetensors_export(result.hf_model, torch.bfloat16)
    master = get_fp32_state_dict_from_zero_checkpoint(result.checkpoint, tag="ds")
    assert "lm_head.weight" not in weights
    assert all(torch.equal(v, master[k].to(torch.bfloat16)) for k, v in weights.items())
    model = AutoModelForCausalLM.from_pretrained(result.hf_model, dtype=torch.bfloat16)
    assert torch.equal(model.lm_head.weight, weights["model.embed_tokens.weight"])
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())

    # What the workers printed (DeepSpeed's op builds, transformers' loading bars, ...) is in per-rank logs
    # in the run dir, not on the driver's console; Ray Train's per-step "Reporting training result" line
    # is silenced, not just moved there, and DeepSpeed no longer warns that it found no accelerator
    # (genrm_ray.env sets DS_ACCELERATOR=cpu on a CPU build of torch).
    for rank in (0, 1):
        text = (result.run_dir / f"worker_{rank}.log").read_text()
        assert ("deepspeed" in text.lower() or "loading weights" in text.lower()) and "Reporting training result" not in text, \
            text[-2000:]
        assert "unable to detect" not in text, text[-2000:]

    # wandb offline run holds what was logged: read its own files back.
    runs = sorted((result.run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    history = _wandb_history(next(runs[0].glob("run-*.wandb")))
    assert [h.get("_step") for h in history] == [1, 2, 3, 4, 5, 6], history
    for key in ("loss", "loss_verify", "loss_correct", "padding_share", "lr"):
        assert [h[key] for h in history] == pytest.approx([m[key] for m in metrics]), key


def _wandb_history(run_file: Path) -> list[dict]:
    """History rows of an offline run's .wandb file. wandb 0.31 ships no Python reader (and writes
    no wandb-summary.json offline), so read its container directly: a 7-byte ":W&B" header, then
    LevelDB log blocks of 32 KiB whose chunks (crc32, length, type) carry protobuf Records."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending, rows = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer too short for a chunk header: padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item})
    return rows


def test_genrm_cot_zero3_lambda_zero_exports_hf_model_for_vllm(assets, ray_cluster):
    cfg = make_cfg(assets, "cot_z3", "objective.mode=cot", "objective.lambda_correct=0", "data.correct=",
                   "deepspeed.zero_stage=3", "deepspeed.bf16=true")
    result = run_training(cfg)
    metrics = read_metrics(result.run_dir)
    assert len(metrics) == 6
    _assert_losses(metrics, lam=0)

    # The consolidated ZeRO-3 export holds the trained engine's final weights: the bf16 copy of the
    # fp32 master weights in the last checkpoint (step 6), not the initial ones.
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from genrm_ray.engine import VLLMBackend

    export = result.hf_model
    weights = _safetensors_export(export, torch.bfloat16)
    master = get_fp32_state_dict_from_zero_checkpoint(result.checkpoint, tag="ds")
    initial = AutoModelForCausalLM.from_pretrained(assets["model"]).state_dict()
    assert weights.keys() <= master.keys() and "lm_head.weight" not in weights
    for k, v in weights.items():
        assert torch.equal(v, master[k].to(torch.bfloat16)), k
    assert any(not torch.allclose(initial[k], v.float()) for k, v in weights.items())

    # transformers loads it, and vLLM agrees with it on p(Yes).
    tokenizer = AutoTokenizer.from_pretrained(export)
    model = AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32)
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    assert torch.equal(model.model.embed_tokens.weight, weights["model.embed_tokens.weight"].float())
    yes, no = prompts.yes_no_token_ids(tokenizer)
    question, words = _problem(random.Random(7))
    prompt = prompts.verify_direct_prompt(TASK, question, _solution(words, wrong=False))
    with torch.no_grad():
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        hf = torch.log_softmax(model(ids).logits[0, -1].float(), -1)[[yes, no]].tolist()
    backend = VLLMBackend(export, dtype="float32", enforce_eager=True, max_model_len=512)  # the one vLLM load here
    try:
        (vllm_lp,) = backend.next_token_logprobs([prompt], [yes, no])
    finally:
        backend.close()
    assert vllm_lp == pytest.approx(hf, abs=2e-2)


def test_policy_zero2_fp32_optimizer_offload(assets, ray_cluster):
    result = run_training(make_cfg(assets, "policy", "objective.name=policy", "data.verify_direct=", "data.verify_cot=",
                                   "deepspeed.bf16=false", "deepspeed.offload_optimizer=true"))
    metrics = read_metrics(result.run_dir)
    assert all(set(m) >= {"loss", "loss_correct"} and "loss_verify" not in m for m in metrics)
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    _safetensors_export(result.hf_model, torch.float32)  # fp32 run, fp32 export


def test_discriminative_zero3_param_offload(assets, ray_cluster):
    result = run_training(make_cfg(assets, "disc", "objective.name=discriminative", "deepspeed.zero_stage=3",
                                   "deepspeed.offload_param=true", "deepspeed.offload_optimizer=true", "deepspeed.bf16=true"))
    metrics = read_metrics(result.run_dir)
    assert len(metrics) == 6 and all(math.isfinite(m["loss_verify"]) for m in metrics)
    # BCE of a fresh single-logit head starts near ln 2.
    assert 0.3 < metrics[0]["loss"] < 1.5
    from transformers import AutoModelForSequenceClassification

    weights = _safetensors_export(result.hf_model, torch.bfloat16)  # gathered from offloaded ZeRO-3 params
    model = AutoModelForSequenceClassification.from_pretrained(result.hf_model)
    assert model.config.num_labels == 1 and model.score.weight.shape[0] == 1
    assert model.config.architectures == ["LlamaForSequenceClassification"]
    assert torch.equal(model.score.weight.to(torch.bfloat16), weights["score.weight"])


def test_resume_after_killed_worker_continues_from_checkpoint(assets, ray_cluster):
    # Worker rank 1 exits (os._exit) at the start of step 5 on the first attempt; the checkpoint of
    # step 3 is the last one, so the retry redoes steps 4.. and must reproduce step 4's loss.
    cfg = make_cfg(assets, "resume", "train.fail_at_step=5", "deepspeed.zero_stage=2")
    result = run_training(cfg)
    steps = [m["step"] for m in read_metrics(result.run_dir)]
    assert steps == [1, 2, 3, 4, 4, 5, 6]  # attempt 1 reached step 4; attempt 2 resumed after step 3
    rows = read_metrics(result.run_dir)
    first_try_step4, retry_step4 = rows[3], rows[4]
    assert retry_step4["loss"] == pytest.approx(first_try_step4["loss"], rel=1e-4)
    assert retry_step4["lr"] == pytest.approx(first_try_step4["lr"])
    assert result.metrics["step"] == 6 and len(result.loss_curves["loss"]) == 6


def test_gpu_benchmark_script_runs_on_cpu_without_ray_or_vllm(tmp_path):
    # The GPU benchmark must run where only torch + transformers + deepspeed exist: run it in a
    # fresh interpreter and check that neither ray nor vllm got imported along the way.
    out = tmp_path / "bench.json"
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_train_step.py"
    args = ["--device", "cpu", "--size", "tiny", "--seq-len", "64", "--batch", "4", "--warmup", "1", "--steps", "1", "--out", str(out)]
    code = (
        "import runpy, sys\n"
        f"sys.argv = [{str(script)!r}] + {args!r}\n"
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
        "assert 'ray' not in sys.modules and 'vllm' not in sys.modules, 'benchmark imported ray or vllm'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [r["zero_stage"] for r in report["results"]] == [2, 3]
    for r in report["results"]:
        assert r["tokens_per_step"] == 4 * 64 and r["tokens_per_s"] > 0 and r["model_tflops"] > 0
        assert r["parameters"] > 10_000 and all(math.isfinite(x) for x in r["loss"])


ENGINE_GRAD_NORM = """
import json, os, random, sys, torch
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[2], RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
torch.distributed.init_process_group("gloo")
from transformers import AutoModelForCausalLM
from genrm_ray.train.config import DeepSpeedConfig, TrainHParams
from genrm_ray.train.data import Example, collate
from genrm_ray.train.step import TargetTokenLoss, build_engine, lm_loss, train_step

def batch(seed):
    rng, rows = random.Random(seed), []
    for _ in range(4):
        n = rng.randint(10, 30); start = rng.randint(1, n - 1)
        rows.append(Example([rng.randrange(3, 200) for _ in range(n)], [0] * start + [1] * (n - start), 0.0))
    return collate(rows, pad_id=2)[0]

micro = [batch(1), batch(2)]
load = lambda: TargetTokenLoss(AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32))
ref = load()
(sum(lm_loss(ref, b) for b in micro) / 2).backward()
out = {"reference": torch.sqrt(sum((p.grad ** 2).sum() for p in ref.parameters() if p.grad is not None)).item()}
hp = TrainHParams(max_steps=10, micro_batch_size=4, grad_accum=2, lr=1e-3, warmup_steps=1)
for stage in (2, 3):
    ds = DeepSpeedConfig(zero_stage=stage, bf16=False, gradient_clipping=100.0, wall_clock_breakdown=True)
    engine = build_engine(load(), ds, hp)
    train_step(engine, [{"correct": b} for b in micro], "policy", 1.0)
    out[stage] = float(engine.get_global_grad_norm())
print(json.dumps(out))
"""


def test_engine_runs_its_backward_hooks_on_the_target_token_loss(assets):
    """The loss must be the DeepSpeed engine's own output: its hooks on that output start the timers
    (wall_clock_breakdown fails otherwise) and divide by grad_accum. Two micro-batches through
    ZeRO-2 and ZeRO-3 give the gradient norm of plain torch's mean over both."""
    from tests.fixtures.ray_cluster import free_port

    proc = subprocess.run([sys.executable, "-c", ENGINE_GRAD_NORM, str(assets["model"]), str(free_port())],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    norms = json.loads(proc.stdout.strip().splitlines()[-1])
    assert norms["reference"] > 0
    for stage in ("2", "3"):
        assert norms[stage] == pytest.approx(norms["reference"], rel=1e-4), stage  # x2 without the scaling
