"""Ray Train glue: checks before training, the per-worker loop, checkpoints, metrics, HF export.

``run_training(cfg)`` validates everything it can on the driver (config values, model dir and
tokenizer, dataset files, cluster resources), then runs a TorchTrainer whose workers each build a
DeepSpeed engine (genrm_ray.train.step) and run the loop below. Rank 0 writes metrics to wandb,
``<output_dir>/metrics.jsonl`` and a tqdm bar; every ``checkpoint_every`` steps all ranks save their
DeepSpeed shards and report them as one Ray Train checkpoint, from which a restarted worker group
resumes (``FailureConfig(max_failures)``). At the end all ranks join the export (ZeRO-3 gathers the
partitions) and rank 0 writes ``<output_dir>/hf_model``: model.safetensors, config, tokenizer.

Console: Ray Train's own INFO lines (worker group start-up, checkpoints) are cut by
``RunConfig(logging_config=LoggingConfig(RAY_TRAIN_LOG_LEVEL))``, its per-step, per-worker
"Reporting training result" line by ``_quiet_report_log``;
whatever a worker prints, warns or logs to stdout/stderr (DeepSpeed's accelerator line, deprecation
warnings, weight-loading bars) goes to ``<output_dir>/worker_<rank>.log``. What is left is rank 0's
progress bar and the job's own summary lines.

Where outputs go: with ``storage`` "" everything is in ``output_dir`` (one machine). With ``storage``
set (a shared path or a URI, genrm_ray.runs) Ray Train keeps its checkpoints under
``<storage>/ray``, rank 0 writes the export to its node's temp dir and uploads it to
``<storage>/hf_model`` with metrics.jsonl, and each rank uploads its worker log: nothing a worker
writes stays on its node, and the driver reads only ``storage``. The model and data paths must be
visible to every worker: on a multi-node cluster they are on the shared mount.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import ray
import ray.train
import torch
from ray.train import Checkpoint, FailureConfig, RunConfig
from ray.train.torch import TorchConfig, TorchTrainer
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from genrm_ray import prompts, runs
from genrm_ray.config import to_dict
from genrm_ray.env import release_free_memory
from genrm_ray.run_logger import RunLogger
from genrm_ray.runs import require_hf_model_dir
from genrm_ray.train.config import TrainConfig, check_train_config, resolve_bf16
from genrm_ray.train.data import BatchStream, Example, balanced_subset, load_examples
from genrm_ray.train.step import TargetTokenLoss, build_engine, freeze_bottom, train_step, unwrap_lm

CHECKPOINT_TAG = "ds"  # DeepSpeed tag dir inside each Ray checkpoint
# Ray Train's INFO lines (one "Reporting training result" per step per worker) drown the progress
# bar; its warnings and errors still reach the console, and Ray's session logs keep everything.
RAY_TRAIN_LOG_LEVEL = "WARNING"


@dataclass
class TrainResult:
    metrics: dict[str, Any]  # last step's metrics
    hf_model: runs.Location  # HF-format export (transformers / vLLM load it; a URI: runs.local_model_dir first)
    checkpoint: str | None  # last Ray Train checkpoint (DeepSpeed state)
    tokens_per_s: float  # non-pad tokens of all workers per second of train_step time, steps 2.. (no report/checkpoint time)
    padding_share: float  # pad tokens / all tokens over the run
    loss_curves: dict[str, list[float]] = field(default_factory=dict)  # "loss", "loss_verify", ... per step
    run_dir: Path = Path()


class TrainSetupError(ValueError):
    """A run that cannot start: bad config value, model, tokenizer, data or cluster size."""


def _datasets(cfg: TrainConfig) -> dict[str, tuple[str, str, bool]]:
    """Set name -> (path, record kind, classify) that the objective trains on."""
    obj, data = cfg.objective, cfg.data
    if obj.name == "policy":
        wanted = {"correct": ("data.correct", data.correct, "correct", False)}
    elif obj.name == "discriminative":
        wanted = {"verify": ("data.verify_direct", data.verify_direct, "verify_direct", True)}
    else:
        path = data.verify_direct if obj.mode == "direct" else data.verify_cot
        wanted = {"verify": (f"data.verify_{obj.mode}", path, f"verify_{obj.mode}", False)}
        if obj.lambda_correct > 0:
            wanted["correct"] = ("data.correct", data.correct, "correct", False)
    for key, path, _, _ in wanted.values():
        if not path:
            raise TrainSetupError(f"{key} is required for objective.name={obj.name} (mode={obj.mode}, lambda_correct={obj.lambda_correct})")
        if not Path(path).is_file():
            raise TrainSetupError(f"{key}: no such file {path}")
    return {name: (path, kind, classify) for name, (_, path, kind, classify) in wanted.items()}


def _load_sets(cfg: TrainConfig, tokenizer) -> dict[str, list[Example]]:
    sets = {
        name: load_examples(path, kind, tokenizer, cfg.data.max_length, classify)
        for name, (path, kind, classify) in _datasets(cfg).items()
    }
    if "verify" in sets:
        sets["verify"] = balanced_subset(sets["verify"], cfg.data.max_verify_examples, cfg.train.seed)
    return sets


def _worker_resources(cfg: TrainConfig) -> dict[str, float]:
    res = dict(cfg.scaling.resources_per_worker)
    if cfg.scaling.use_gpu:
        res.setdefault("GPU", 1.0)
    return res


def check_setup(cfg: TrainConfig) -> dict[str, int]:
    """Fail before training on anything that would fail later; returns example counts per set."""
    obj = cfg.objective
    try:
        check_train_config(cfg)
        model_dir = require_hf_model_dir(cfg.model.path, "model.path")
    except ValueError as e:
        raise TrainSetupError(str(e)) from None
    layers = json.loads((model_dir / "config.json").read_text()).get("num_hidden_layers")
    if layers is not None and cfg.model.freeze_bottom_layers > layers:
        raise TrainSetupError(f"model.freeze_bottom_layers={cfg.model.freeze_bottom_layers}, but {model_dir} has {layers} layers")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token_id is None:
        raise TrainSetupError(f"tokenizer in {model_dir} has no pad token (needed for batching)")
    if obj.name == "genrm":
        try:
            prompts.yes_no_token_ids(tokenizer)
        except prompts.TokenizerError as e:
            raise TrainSetupError(f"model.path={cfg.model.path}: {e}") from None
    counts = {name: len(examples) for name, examples in _load_sets(cfg, tokenizer).items()}

    if not ray.is_initialized():
        ray.init()
    have = ray.cluster_resources()
    for name, per_worker in _worker_resources(cfg).items():
        need = per_worker * cfg.scaling.num_workers
        if have.get(name, 0.0) < need:
            raise TrainSetupError(
                f"scaling.num_workers={cfg.scaling.num_workers} x {name}={per_worker} needs {name}={need:g}, "
                f"but the Ray cluster has {name}={have.get(name, 0.0):g} in total"
            )
    return counts


def _absolute(cfg: TrainConfig) -> TrainConfig:
    """A copy with absolute paths: Ray workers do not run in the driver's working directory."""
    cfg = copy.deepcopy(cfg)
    for section, key in [(cfg.model, "path"), (cfg.data, "verify_direct"), (cfg.data, "verify_cot"), (cfg.data, "correct")]:
        if getattr(section, key):
            setattr(section, key, str(Path(getattr(section, key)).resolve()))
    cfg.output_dir = str(Path(cfg.output_dir).resolve())
    cfg.storage = str(runs.as_location(cfg.storage)) if cfg.storage else ""
    # None = what this hardware runs fast (fp32 on a CPU without bf16 instructions); workers and the
    # export then agree on one value.
    cfg.deepspeed.bf16 = resolve_bf16(cfg.deepspeed, cfg.scaling.use_gpu)
    return cfg


def storage_root(cfg: TrainConfig) -> runs.Location:
    """Where this run's checkpoints, export and metrics.jsonl go: ``storage``, else ``output_dir``."""
    return runs.as_location(cfg.storage or cfg.output_dir)


def worker_dir(cfg: TrainConfig) -> Path:
    """The folder a worker writes its log, wandb files and (rank 0) metrics.jsonl into: output_dir on
    one machine; with ``storage`` set, a folder in this node's temp dir (uploaded at the end)."""
    if not cfg.storage:
        return Path(cfg.output_dir)
    import hashlib
    import tempfile

    return Path(tempfile.gettempdir()) / "genrm-ray" / hashlib.sha256(cfg.storage.encode()).hexdigest()[:16]


def run_training(cfg: TrainConfig) -> TrainResult:
    """Check the setup, train on Ray Train + DeepSpeed, export HF weights; see the module docstring."""
    cfg = _absolute(cfg)
    check_setup(cfg)
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)  # a fresh run; resumes happen inside fit()
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"cfg": cfg},
        torch_config=TorchConfig(backend="nccl" if cfg.scaling.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.scaling.num_workers,
            use_gpu=cfg.scaling.use_gpu,
            resources_per_worker=_worker_resources(cfg),
        ),
        run_config=RunConfig(
            name=run_dir.name,
            storage_path=str(runs.join(storage_root(cfg), "ray")),
            failure_config=FailureConfig(max_failures=cfg.scaling.max_failures),
            logging_config=ray.train.LoggingConfig(log_level=RAY_TRAIN_LOG_LEVEL),
        ),
    )
    result = trainer.fit()
    return _collect(result, storage_root(cfg), run_dir)


def _collect(result, root: runs.Location, run_dir: Path) -> TrainResult:
    """Loss curves etc. from metrics.jsonl; a step logged twice (before a crash, again after the
    resume) keeps its last value, which is the one the surviving run trained on."""
    by_step: dict[int, dict[str, Any]] = {}
    for line in runs.read_text(runs.join(root, "metrics.jsonl")).splitlines():
        row = json.loads(line)
        by_step[row["step"]] = row
    rows = [by_step[s] for s in sorted(by_step)]
    curves = {k: [r[k] for r in rows] for k in ("loss", "loss_verify", "loss_correct") if k in rows[0]}
    timed = rows[1:] or rows
    pad = sum(r["pad_tokens"] for r in rows)
    return TrainResult(
        metrics=dict(result.metrics or rows[-1]),
        hf_model=runs.join(root, "hf_model"),
        checkpoint=result.checkpoint.path if result.checkpoint else None,
        tokens_per_s=sum(r["tokens"] for r in timed) / sum(r["step_time_s"] for r in timed),
        padding_share=pad / (pad + sum(r["tokens"] for r in rows)),
        loss_curves=curves,
        run_dir=run_dir,
    )


def _load_model(cfg: TrainConfig) -> torch.nn.Module:
    """The module the engine wraps: the classifier, or the causal LM in TargetTokenLoss."""
    torch.manual_seed(cfg.train.seed)  # the classifier's new score head must start equal on every rank
    if cfg.objective.name == "discriminative":
        model = AutoModelForSequenceClassification.from_pretrained(cfg.model.path, num_labels=1, dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(cfg.model.path, dtype=torch.float32)
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    freeze_bottom(model, cfg.model.freeze_bottom_layers)
    return model if cfg.objective.name == "discriminative" else TargetTokenLoss(model)


def _real_and_pad(micro: dict[str, dict[str, torch.Tensor]]) -> tuple[int, int]:
    """Real and pad tokens the model computes on for one micro-batch: train_step feeds its sets as
    ONE batch right-padded to the widest of them (step.genrm_loss)."""
    real = sum(int(b["attention_mask"].sum()) for b in micro.values())
    fed = sum(len(b["input_ids"]) for b in micro.values()) * max(b["input_ids"].shape[1] for b in micro.values())
    return real, fed - real


def _show_once():
    """A warnings.showwarning that prints each distinct warning once. torch's collective
    deprecations fire on every call, and a filter action "once" cannot stop them: something in the
    step mutates the warning filters, which resets Python's once-registry each time."""
    seen: set[tuple[type, str]] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if (category, str(message)) not in seen:
            seen.add((category, str(message)))
            sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    return show


@contextmanager
def _worker_output(run_dir: Path, rank: int) -> Iterator[TextIO]:
    """Send what this worker writes to stdout/stderr to ``<run_dir>/worker_<rank>.log``; yields a
    stream to the console (for rank 0's progress bar).

    Ray forwards every worker's stdout/stderr to the driver's console. The redirect is at the file
    descriptors, not sys.stdout/sys.stderr: it catches print, warnings, tqdm bars, logging handlers
    that hold sys.stdout (DeepSpeed's) and output of C code and compilers alike; and DeepSpeed's own
    trick of silencing a compiler by dup2-ing onto sys.stderr.fileno() keeps working.
    """
    streams = (sys.stdout, sys.stderr)
    for s in streams:
        s.flush()
    saved = {s.fileno(): os.dup(s.fileno()) for s in streams}
    console = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
    with open(run_dir / f"worker_{rank}.log", "a") as log, warnings.catch_warnings():
        for fd in saved:
            os.dup2(log.fileno(), fd)
        warnings.showwarning = _show_once()
        try:
            yield console
        finally:
            for s in streams:
                s.flush()
            for fd, original in saved.items():
                os.dup2(original, fd)
                os.close(original)
            console.close()


def _export_hf(engine, export: Path, tokenizer, rank: int) -> None:
    """Write ``export`` as a Hugging Face model dir: model.safetensors, config, tokenizer.

    The weights are the engine's 16-bit copy (bf16 under deepspeed.bf16, else fp32). Every rank must
    call this: under ZeRO-3 each layer is gathered from all partitions (rank 0 receives the result).
    """
    if engine.zero_optimization_partition_weights():  # ZeRO-3
        state_dict = engine._zero3_consolidated_16bit_state_dict()  # None on ranks > 0
    else:
        state_dict = engine.module_state_dict()  # whole on every rank
    if rank == 0:
        shutil.rmtree(export, ignore_errors=True)  # no stale weights of an earlier run (pytorch_model.bin)
        # save_pretrained drops tied duplicates (lm_head = embed_tokens; safetensors refuses shared
        # tensors), and names in config.json the class trained (a classifier from an LM checkpoint
        # says ...ForSequenceClassification) and the dtype of the weights.
        unwrap_lm(engine.module).save_pretrained(export, state_dict=state_dict)
        tokenizer.save_pretrained(export)
    torch.distributed.barrier()


def _quiet_report_log() -> None:
    """Ray Train 2.60 logs every report ("Reporting training result N: ...", on each rank) at INFO
    on a logger named after its source file (``getLogger(__file__)``), outside the ``ray.train``
    tree that RunConfig's LoggingConfig governs; give that logger the same level."""
    from ray.train.v2._internal.execution import context

    logging.getLogger(context.__file__).setLevel(RAY_TRAIN_LOG_LEVEL)


def _train_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker, its console output in ``<output_dir>/worker_<rank>.log``."""
    _quiet_report_log()
    cfg: TrainConfig = loop_config["cfg"]
    rank = ray.train.get_context().get_world_rank()
    local = worker_dir(cfg)
    local.mkdir(parents=True, exist_ok=True)
    try:
        with _worker_output(local, rank) as console:
            _train(cfg, console, local)
    finally:
        if cfg.storage:  # the log goes along even when the worker failed: it says why
            log = local / f"worker_{rank}.log"
            if log.is_file():
                runs.write_text(runs.join(cfg.storage, log.name), log.read_text())


def _train(cfg: TrainConfig, console: TextIO, local: Path) -> None:
    """Engine, resume, the step loop, checkpoints, export (``local``: this worker's folder, worker_dir)."""
    hp = cfg.train
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.path)
    sets = _load_sets(cfg, tokenizer)
    streams = {name: BatchStream(ex, hp.micro_batch_size, hp.seed + i, tokenizer.pad_token_id)
               for i, (name, ex) in enumerate(sorted(sets.items()))}
    engine = build_engine(_load_model(cfg), cfg.deepspeed, hp)
    device = engine.device

    start, restored = 0, ray.train.get_checkpoint()
    if restored:
        with restored.as_directory() as ckpt_dir:
            _, client_state = engine.load_checkpoint(ckpt_dir, tag=CHECKPOINT_TAG)
        start = client_state["step"]
    log = cfg.logging
    if cfg.storage and rank == 0 and restored is None:  # a fresh run: no rows of an earlier run with this storage
        (local / "metrics.jsonl").unlink(missing_ok=True)
    logger = RunLogger(local, to_dict(cfg), cfg.train.max_steps, start, postfix=("loss", "padding_share"),
                       wandb_project=log.wandb_project, wandb_entity=log.wandb_entity, wandb_mode=log.wandb_mode,
                       progress_bar=log.progress_bar, console=console) if rank == 0 else None

    for step in range(start, hp.max_steps):
        if hp.fail_at_step == step + 1 and restored is None and rank == world - 1:
            os._exit(1)  # fault injection (tests): this worker dies; Ray restarts the group
        micro_batches, counts = [], torch.zeros(2)
        for micro in range(hp.grad_accum):
            g = (step * hp.grad_accum + micro) * world + rank
            mb = {name: stream.get(g)[0] for name, stream in streams.items()}
            counts += torch.tensor(_real_and_pad(mb))
            micro_batches.append({name: {k: v.to(device) for k, v in b.items()} for name, b in mb.items()})
        lr = engine.get_lr()[0]  # the rate this step uses (the schedule advances inside train_step)
        t0 = time.perf_counter()
        terms = train_step(engine, micro_batches, cfg.objective.name, cfg.objective.lambda_correct)
        step_time = time.perf_counter() - t0
        if device.type == "cpu":
            # glibc keeps the freed activations of every sequence length seen: a CoT run's worker grew
            # to 12 GB by step 6 and the node's memory monitor killed the group.
            release_free_memory()
        counts = counts.to(device)  # nccl reduces device tensors only
        torch.distributed.all_reduce(counts)  # global token counts
        tokens, pad = int(counts[0]), int(counts[1])
        metrics = {"step": step + 1, **terms, "lr": lr, "tokens": tokens, "pad_tokens": pad,
                   "padding_share": pad / (tokens + pad), "step_time_s": step_time, "tokens_per_s": tokens / step_time,
                   "wall_time": time.time()}  # the gaps between steps hold the report, logging and the data
        if logger:
            logger.log(metrics)  # before report: a step that finished is logged even if a peer dies next
        if (step + 1) % hp.checkpoint_every == 0 or step + 1 == hp.max_steps:
            with tempfile.TemporaryDirectory(prefix="genrm-ckpt-") as tmp:
                engine.save_checkpoint(tmp, tag=CHECKPOINT_TAG, client_state={"step": step + 1})
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics)

    if not cfg.storage:
        _export_hf(engine, local / "hf_model", tokenizer, rank)
    else:
        with tempfile.TemporaryDirectory(prefix="genrm-export-") as tmp:
            _export_hf(engine, Path(tmp) / "hf_model", tokenizer, rank)
            if rank == 0:
                runs.upload_dir(Path(tmp) / "hf_model", runs.join(cfg.storage, "hf_model"))
    if logger:
        logger.close()
        if cfg.storage:
            runs.write_text(runs.join(cfg.storage, "metrics.jsonl"), (local / "metrics.jsonl").read_text())
    torch.distributed.barrier()  # the driver reads the export once fit() returns: every upload is done
