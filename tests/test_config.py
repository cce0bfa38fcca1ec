"""genrm_ray.config: YAML + dotted key=value overrides into typed dataclasses, with clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from genrm_ray.config import ConfigError, load_config, to_dict
from genrm_ray.train import TrainConfig


@dataclass
class Inner:
    lr: float = 0.1
    steps: int = 3
    name: str = "a"
    flag: bool = False
    mode: Literal["direct", "cot"] = "direct"
    entity: str | None = None
    tags: list[str] = field(default_factory=list)
    resources: dict[str, float] = field(default_factory=lambda: {"CPU": 1.0})


@dataclass
class Outer:
    train: Inner = field(default_factory=Inner)
    out: str = "runs"


def test_defaults_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 1e-3\n  steps: 10\n  tags: [x, y]\nout: runs/a\n")
    cfg = load_config(Outer, path, ["train.steps=20", "train.flag=true", "train.entity=null", "train.resources={CPU: 2, GPU: 1}"])
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)  # PyYAML reads 1e-3 as a string
    assert cfg.train.steps == 20 and cfg.train.flag is True and cfg.train.entity is None
    assert cfg.train.tags == ["x", "y"] and cfg.train.resources == {"CPU": 2.0, "GPU": 1.0}
    assert cfg.out == "runs/a" and cfg.train.name == "a"
    assert to_dict(cfg)["train"]["steps"] == 20
    assert load_config(Outer).train.steps == 3  # defaults only
    assert load_config(Outer, None, ["out="]).out == ""  # `key=` is the empty string
    assert load_config(Outer, None, ["train.lr=2"]).train.lr == 2.0  # int widened to float


def test_unknown_key_names_the_key_the_source_and_the_valid_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  learning_rate: 1e-3\n")
    with pytest.raises(ConfigError) as err:
        load_config(Outer, path)
    assert str(path) in str(err.value) and "'train.learning_rate'" in str(err.value)
    assert "valid keys at 'train': lr, steps, name, flag, mode, entity, tags, resources" in str(err.value)
    with pytest.raises(ConfigError, match=r"override 'trian\.lr=1'.*unknown config key 'trian'.*top level: train, out"):
        load_config(Outer, None, ["trian.lr=1"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.steps=1.5", r"'train\.steps' expects int, got 1\.5 \(float\)"),
        ("train.steps=true", r"'train\.steps' expects int, got True \(bool\)"),
        ("train.lr=fast", r"'train\.lr' expects float, got 'fast' \(str\)"),
        ("train.flag=1", r"'train\.flag' expects bool, got 1 \(int\)"),
        ("train.name=3", r"'train\.name' expects str, got 3 \(int\)"),
        ("train.mode=both", r"'train\.mode' must be one of \['direct', 'cot'\], got 'both'"),
        ("train.tags=x", r"'train\.tags' expects list\[str\], got 'x'"),
        ("train.resources={CPU: many}", r"'train\.resources\.CPU' expects float, got 'many'"),
        ("train=3", r"'train' is a section \(Inner\); expected a mapping, got 3"),
        ("train.lr", r"not of the form key=value"),
    ],
)
def test_wrong_type_names_key_expected_type_and_value(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Outer, None, [override])


def test_non_mapping_file_is_rejected(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=rf"{path}: top level must be a mapping, got list"):
        load_config(Outer, path)


def test_train_config_overrides_reach_nested_sections():
    cfg = load_config(TrainConfig, None, ["train.lr=1e-3", "deepspeed.zero_stage=3", "objective.name=policy"])
    assert cfg.train.lr == 1e-3 and cfg.deepspeed.zero_stage == 3 and cfg.objective.name == "policy"
    assert TrainConfig().deepspeed.zero_stage == 2  # defaults untouched (no shared mutable state)


def test_invalid_yaml_names_the_file_line_or_the_override(tmp_path):
    from genrm_ray.genrm_job import GenRMJobConfig

    bad = tmp_path / "bad.yaml"
    bad.write_text("genrm:\n  train: {max_steps: 3\nrun_dir: x\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML: expected .* at line 3, column 8"):
        load_config(GenRMJobConfig, bad)
    with pytest.raises(ConfigError, match=r"override 'eval.best_of_n_overrides=\[k_curve=\[1,4\]\]': the value is not valid YAML"):
        load_config(GenRMJobConfig, None, ["eval.best_of_n_overrides=[k_curve=[1,4]]"])
    quoted = load_config(GenRMJobConfig, None, ['eval.best_of_n_overrides=["k_curve=[1,4]"]'])
    assert quoted.eval.best_of_n_overrides == ["k_curve=[1,4]"]
