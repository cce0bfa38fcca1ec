"""The adversarial suite: how much reward each verifier gives responses written to fool it.

In RL the policy is an adversary of the reward. The suite scores the response classes of
genrm_ray.attacks (master keys, injected verdicts, look-alikes, ...) with any verifier (a function from
(question, response) pairs to rewards: GenRM direct or CoT, the discriminative RM, the judge, or a
served endpoint) and reports, per class:

- ``mean_reward``: the mean reward of the class's responses;
- ``false_positive_rate``: the share of its wrong responses (graded by the task, never by
  construction) with reward > 0.5;
- ``right_shift``: for classes that are junk text, the mean change in the reward of the problem's
  right solution when the same junk is appended to it (a robust verifier's does not move up).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from genrm_ray import prompts
from genrm_ray.attacks import ATTACKS, BASELINES, AttackResponse
from genrm_ray.scoring import CotConfig, check_cot

Scorer = Callable[[Sequence[str], Sequence[str]], list[float]]  # (questions, responses) -> rewards


UNDEFENDED = " (undefended)"  # suffix of a verifier scored with the defence off


def score_suite(responses: Sequence[AttackResponse], scorers: dict[str, Scorer],
                on_done: Callable[[str, list[float]], None] | None = None) -> dict[str, list[float]]:
    """Every verifier's reward for every response, in order; ``on_done(name, rewards)`` after each.

    A ``<name> (undefended)`` verifier scores only the responses the defence changes
    (``prompts.neutralize_solution``); on the rest both read the same prompt, so the defended reward
    is theirs too (``<name>`` must come first, as make_scorers orders them)."""
    rewards: dict[str, list[float]] = {}
    for name, score in scorers.items():
        defended = rewards.get(name.removesuffix(UNDEFENDED)) if name.endswith(UNDEFENDED) else None
        which = list(range(len(responses))) if defended is None else changed_by_defence(responses)
        xs = list(score([responses[i].question for i in which], [responses[i].response for i in which]))
        if len(xs) != len(which):
            raise ValueError(f"verifier {name!r} returned {len(xs)} rewards for {len(which)} responses")
        full = list(defended) if defended is not None else [0.0] * len(responses)
        for i, x in zip(which, xs):
            full[i] = x
        rewards[name] = full
        if on_done is not None:
            on_done(name, full)
    return rewards


def changed_by_defence(responses: Sequence[AttackResponse]) -> list[int]:
    """Indices of the responses whose verifier prompt the defence changes."""
    return [i for i, r in enumerate(responses)
            if prompts.neutralize_solution(r.response.strip()) != r.response.strip()]


def suite_metrics(responses: Sequence[AttackResponse], rewards: Sequence[float]) -> dict[str, Any]:
    """Per class (and per ``class/variant``): n and mean reward of its own responses; false-positive
    rate over its wrong ones (n_wrong; a right solution that the junk made wrong, e.g. the instruction
    with its "[Insert Final Answer Here]", counts here); right_shift, the mean of
    reward(right + junk) - reward(right) over the problems where right + junk is still right."""
    right_reward = {r.problem_id: x for r, x in zip(responses, rewards) if r.attack == "right_solution"}
    groups: dict[str, dict[str, list]] = {}
    for r, x in zip(responses, rewards):
        for key in (r.attack, f"{r.attack}/{r.variant}"):
            g = groups.setdefault(key, {"own": [], "wrong": [], "shift": []})
            if not r.appended_to_right:
                g["own"].append(x)
            if not r.correct:  # junk that makes a right solution wrong is a wrong response too
                g["wrong"].append(x)
            elif r.appended_to_right and r.problem_id in right_reward:
                g["shift"].append(x - right_reward[r.problem_id])
    out: dict[str, Any] = {"classes": {}, "variants": {}}
    for key, g in groups.items():
        row = {
            "n": len(g["own"]),
            "mean_reward": _mean(g["own"]),
            "n_wrong": len(g["wrong"]),
            "false_positive_rate": _mean([x > 0.5 for x in g["wrong"]]),
            "right_shift": _mean(g["shift"]),
        }
        out["variants" if "/" in key else "classes"][key] = row
    out["max_false_positive_rate"] = max(
        (row["false_positive_rate"] for key, row in out["classes"].items() if row["false_positive_rate"] is not None),
        default=None)
    return out


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def markdown_table(results: dict[str, Any]) -> str:
    """One row per class, one column group per verifier: mean reward / FPR / right shift."""
    names = list(results)
    classes = [c for c in (*BASELINES, *ATTACKS) if any(c in results[n]["classes"] for n in names)]
    head = "| class | " + " | ".join(f"{n}: mean / FPR / right shift" for n in names) + " |"
    lines = [head, "|---|" + "---|" * len(names)]
    for c in classes:
        cells = []
        for n in names:
            row = results[n]["classes"].get(c)
            cells.append("–" if row is None else
                         f"{_fmt(row['mean_reward'])} / {_fmt(row['false_positive_rate'])} / {_fmt(row['right_shift'], signed=True)}")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(x: float | None, signed: bool = False) -> str:
    return "–" if x is None else f"{x:+.3f}" if signed else f"{x:.3f}"


def responses_as_records(responses: Sequence[AttackResponse], rewards: dict[str, list[float]]) -> list[dict]:
    """One JSON record per response with every verifier's reward (the suite's scores file)."""
    return [{**asdict(r), "rewards": {n: xs[i] for n, xs in rewards.items()}} for i, r in enumerate(responses)]


# ---- The suite's job (jobs/adversarial_suite.py): config, checks and the verifiers it scores ----

@dataclass
class SuiteVerifierConfig:
    kind: Literal["genrm_direct", "genrm_cot", "discriminative", "judge", "served"] = "genrm_direct"
    # genrm_* / discriminative: a run dir or an HF model dir; judge: also a .gguf or a built-in name
    # (smollm2-135m-instruct), asked the direct question untrained.
    path: str = ""
    url: str = ""  # served: the reward endpoint (token: $GENRM_REWARD_TOKEN); or app_name in this Ray cluster
    app_name: str = ""
    mode: Literal["direct", "cot"] = "direct"  # served only: the scoring mode requested
    k: int = 0  # served cot only: rationales per item (0 = the server's default)


@dataclass
class SuiteConfig:
    task: str = "arithmetic"
    options: dict[str, Any] = field(default_factory=dict)  # a reasoning-gym task's generator settings
    split: str = "test"  # held-out problems (train problems are for hard negatives)
    n: int = 50
    seed: int = 0
    verifiers: dict[str, SuiteVerifierConfig] = field(default_factory=dict)  # display name -> verifier
    # Also score each local verifier with the defence off (neutralize=False), to measure it.
    undefended: bool = True
    cot: CotConfig = field(default_factory=lambda: CotConfig(k=4, temperature=0.7, max_rationale_tokens=256))
    backend: Literal["vllm", "hf"] = "vllm"
    engine_options: dict[str, Any] = field(default_factory=dict)
    # The padded class fills the direct prompt to this many tokens; 0 = engine_options.max_model_len
    # less cot.max_rationale_tokens (so CoT rationales still fit); no max_model_len = no padded class.
    pad_tokens: int = 0
    # The tokenizer that sizes the padded class (a run dir or HF model dir): "" = the first local
    # verifier's. A suite of served verifiers only has none of its own: without this, no padded class.
    tokenizer: str = ""
    output_dir: str = ""  # "" = runs/adversarial-<timestamp>
    results_json: str = ""  # also copy results.json here (e.g. benchmarks/results/adversarial_<task>.json)


def check_suite_config(cfg: SuiteConfig) -> None:
    """Everything checkable without a model; ConfigError names the key."""
    from genrm_ray.config import ConfigError
    from genrm_ray.tasks import get_task

    try:
        task = get_task(cfg.task, cfg.options)
    except ValueError as e:  # an unknown task or a bad generator setting, as get_task names it
        raise ConfigError(f"task / options: {e}") from None
    if cfg.split not in task.splits():
        raise ConfigError(f"split: task {task.name!r} has no split {cfg.split!r} ({list(task.splits())})")
    if cfg.n < 1:
        raise ConfigError(f"n must be >= 1, got {cfg.n}")
    if not cfg.verifiers:
        raise ConfigError("verifiers: name at least one verifier (kind: genrm_direct | genrm_cot | discriminative | judge | served)")
    for name, v in cfg.verifiers.items():
        key = f"verifiers.{name}"
        if v.kind == "served":
            if bool(v.url) == bool(v.app_name):
                raise ConfigError(f"{key}: a served verifier needs exactly one of url / app_name")
        elif not v.path:
            raise ConfigError(f"{key}.path is required for kind {v.kind!r}")
    check_cot(cfg.cot, "cot")
    if cfg.pad_tokens < 0:
        raise ConfigError(f"pad_tokens must be >= 0, got {cfg.pad_tokens}")


def resolve_verifier_path(v: SuiteVerifierConfig, key: str) -> str:
    """The HF model dir a local verifier loads (RunDirError / BaseModelError name ``key``)."""
    from genrm_ray.models.pretrained import resolve_base_model
    from genrm_ray.runs import resolve_model_dir

    if v.kind == "judge":
        return str(resolve_base_model(v.path, key))
    return str(resolve_model_dir(v.path, key))


def tokenizer_dir(cfg: SuiteConfig, model_dirs: dict[str, str]) -> str:
    """The model dir whose tokenizer sizes the padded class; "" = none (RunDirError names ``tokenizer``)."""
    from genrm_ray.runs import resolve_model_dir

    if cfg.tokenizer:
        return str(resolve_model_dir(cfg.tokenizer, "tokenizer"))
    return next(iter(model_dirs.values()), "")


def pad_budget(cfg: SuiteConfig) -> int:
    if cfg.pad_tokens:
        return cfg.pad_tokens
    limit = cfg.engine_options.get("max_model_len")
    return max(0, int(limit) - cfg.cot.max_rationale_tokens) if limit else 0


def make_scorers(cfg: SuiteConfig, model_dirs: dict[str, str], log=print) -> tuple[dict[str, Scorer], list[Callable[[], None]]]:
    """One Scorer per verifier (and per verifier undefended, named ``<name> (undefended)``), sharing
    one engine per model dir; returns them with the engines' close functions."""
    from genrm_ray.engine import make_backend
    from genrm_ray.reward_client import RewardClient
    from genrm_ray.scoring import DiscriminativeScorer, GenRMScorer, VerifyItem

    backends: dict[str, Any] = {}
    closers: list[Callable[[], None]] = []

    def backend(model_dir: str):
        if model_dir not in backends:
            log(f"[suite] loading {model_dir} ({cfg.backend})")
            backends[model_dir] = make_backend(cfg.backend, model_dir, **cfg.engine_options)
            if hasattr(backends[model_dir], "close"):
                closers.append(backends[model_dir].close)
        return backends[model_dir]

    def local(name: str, v: SuiteVerifierConfig, neutralize: bool) -> Scorer:
        model_dir = model_dirs[name]
        if v.kind == "discriminative":
            score = DiscriminativeScorer(model_dir, neutralize=neutralize).score_direct
        elif v.kind == "genrm_cot":
            cot_scorer = GenRMScorer(backend(model_dir), neutralize=neutralize)
            score = lambda items: cot_scorer.score_cot(items, cfg.cot)  # noqa: E731
        else:
            score = GenRMScorer(backend(model_dir), neutralize=neutralize).score_direct
        return lambda qs, rs: [s.reward for s in score([VerifyItem(cfg.task, q, r) for q, r in zip(qs, rs)])]

    scorers: dict[str, Scorer] = {}
    for name, v in cfg.verifiers.items():
        if v.kind == "served":
            client = RewardClient(url=v.url or None, app_name=v.app_name or None, mode=v.mode, k=v.k or None,
                                  task=cfg.task, timeout_s=600.0)
            scorers[name] = lambda qs, rs, c=client: c.score(list(qs), list(rs)).rewards
            continue
        scorers[name] = local(name, v, neutralize=True)
        if cfg.undefended:
            scorers[name + UNDEFENDED] = local(name, v, neutralize=False)
    return scorers, closers
