"""Training on Ray Train + DeepSpeed ZeRO: GenRM (direct / CoT), policy SFT, discriminative RM.

Public API::

    from genrm_ray.config import load_config
    from genrm_ray.train import TrainConfig, run_training

    cfg = load_config(TrainConfig, "configs/train.yaml", ["train.lr=1e-3", "deepspeed.zero_stage=3"])
    result = run_training(cfg)   # -> TrainResult
    result.hf_model              # <output_dir>/hf_model (model.safetensors): transformers / vLLM load it
    result.checkpoint            # last Ray Train checkpoint (DeepSpeed ZeRO state)
    result.metrics, result.loss_curves, result.tokens_per_s, result.padding_share

Objectives (``objective.name``):
  genrm           L = L_SFT(D_verify) + lambda_correct * L_SFT(D_correct); D_verify is
                  data.verify_direct or data.verify_cot per ``objective.mode``; each optimizer
                  micro-step draws one batch of each set (D_correct skipped when lambda = 0) and
                  runs them as ONE forward/backward, stacked (step.genrm_loss).
  policy          SFT on data.correct.
  discriminative  LlamaForSequenceClassification (num_labels=1), BCE on (x, y) -> label, read
                  from data.verify_direct (its prompt and label).

Modules: config.py (TrainConfig tree), data.py (tokenized examples, length-grouped batches),
step.py (DeepSpeed engine, losses, train_step; importable without Ray or DeepSpeed), loop.py
(Ray Train glue; workers' console output goes to <output_dir>/worker_<rank>.log).
``run_training`` / ``TrainResult`` / ``check_setup`` are imported lazily so that
``genrm_ray.train.step`` works on machines without Ray.
"""

from genrm_ray.train.config import TrainConfig

__all__ = ["TrainConfig", "run_training", "check_setup", "TrainResult", "TrainSetupError"]


def __getattr__(name: str):
    if name in ("run_training", "check_setup", "TrainResult", "TrainSetupError"):
        from genrm_ray.train import loop

        return getattr(loop, name)
    raise AttributeError(name)
