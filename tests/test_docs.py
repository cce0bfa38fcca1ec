"""The docs name only what exists: README.md and docs/*.md checked against the repository (fast tier:
no Ray, vLLM or DeepSpeed; the config classes load with torch + transformers only).

Rules (each failure names file:line and what is wrong):

1. Scripts: every ``python X.py`` names a file in the repository, every ``python -m M`` a module in it.
2. Config files: every ``configs/[<job>/]....yaml`` / ``.yml`` (and every ``--config`` value of a job command) names a file
   in the repository. A ``*`` must match at least one file; a ``<...>`` placeholder
   (``configs/<config>.yaml``) stands for any file. Nothing else is excused: a typo'd name fails.
3. Checkpoints: every ``--checkpoint`` (or ``checkpoint=``) of ``jobs/serve_genrm.py`` is a
   documented output, a placeholder, or a repository path. Outputs live under ``runs/``; the server
   takes a run dir itself (``runs/<run>``) or one of its exports (``genrm_ray.runs.RunDir.EXPORTS``:
   ``runs/<run>/genrm/hf_model``, ``runs/<run>/hf_model``), nothing else under it. Placeholders: an
   all-caps word (``DIR``), a ``<...>`` segment, or a path on a cluster's storage (CLUSTER_ROOTS).
4. Overrides: every ``key=value`` of a ``python jobs/<job>.py`` command loads into that job's config
   class (JOB_CONFIGS) with ``genrm_ray.config.load_config``: the key exists and the value has its type.
   Placeholder values (``T``, ``DIR``, ``<run>``) are replaced by a value of the field's type.
   Tokens that are neither a known option, ``...`` nor ``key=value`` fail.
5. Reward URLs: an ``http://`` URL that points at the reward app (its port is one a shipped serve
   config listens on, or it is the value of a reward-URL setting: ``url=``, ``GENRM_REWARD_URL=``,
   ``--remote_rm_url``, ...) uses a path the shipped configs' ``route_prefix`` serves: the bare base
   URL or prefix + a route of genrm_ray/serving/app.py (or FastAPI's /openapi.json, /docs).
6. Repository paths and names: every ``genrm_ray/...``, ``actors/...``, ``jobs/...``, ``tests/...``,
   ``benchmarks/...``, ``requirements/...``, ``docs/...``, ``experiments/...`` path and every relative Markdown link exists;
   every dotted ``genrm_ray.x.y[.Name[.attr]]`` / ``actors.x.Name`` names a module file and, after it,
   a name defined (or imported) at that module's top level, or an attribute of that class.
"""

from __future__ import annotations

import ast
import dataclasses
import glob
import importlib
import re
import shlex
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import yaml

from genrm_ray.config import ConfigError, load_config
from genrm_ray.runs import RunDir

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "experiments").rglob("README.md"))]
# Config files whose header comments are checked as commands too (each comment line, as if in a code block).
NOT_YET_CHECKED: set[str] = set()  # a config listed here is left out while its header is rewritten
CONFIG_FILES = [p for p in [*sorted((REPO / "configs").rglob("*.yaml")), *sorted((REPO / "experiments").rglob("*.yaml"))]
                if p.relative_to(REPO).as_posix() not in NOT_YET_CHECKED]

# Each job's config class: what its key=value overrides must load into.
JOB_CONFIGS = {
    "train_genrm": ("genrm_ray.genrm_job", "GenRMJobConfig"),
    "eval_best_of_n": ("genrm_ray.evaluation.config", "EvalConfig"),
    "train_grpo": ("genrm_ray.rl.config", "GRPOConfig"),
    "serve_genrm": ("genrm_ray.serving.config", "ServeConfig"),
    "synthesize_rationales": ("genrm_ray.data.synthesis", "SynthesisConfig"),
    "adversarial_suite": ("genrm_ray.evaluation.adversarial", "SuiteConfig"),
}
# The options each job's argparse takes besides --config and key=value (the value follows the option).
JOB_OPTIONS = {"serve_genrm": {"--checkpoint", "--address"}, "eval_best_of_n": {"--problems"}}
OUTPUT_ROOT = "runs/"  # where every job writes unless told otherwise (run_dir / output_dir defaults)
CLUSTER_ROOTS = ("/path/", "/home/ubuntu/", "/mnt/shared/")  # storage on a cluster, as the GPU configs use
# What FastAPI serves besides the app's own routes.
FASTAPI_ROUTES = ("/openapi.json", "/docs")
# A value that names a reward endpoint, right before the URL.
REWARD_URL_SETTING = re.compile(
    r"""(?:GENRM_REWARD_URL=|\burl=["']?|["']url["']\s*:\s*["']|--remote_rm_url\s+|--reward\.remote_url\s+)$""")
PLACEHOLDER = re.compile(r"<[^<>\n]*>")


@dataclass(frozen=True)
class Line:
    path: str  # as shown in messages, relative to the repository
    number: int  # first physical line of a logical one
    text: str  # continuation lines (ending in \) joined inside code blocks
    code: bool  # inside a ``` block


def lines_of(name: str, text: str) -> list[Line]:
    out, code, pending, start = [], False, "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.lstrip().startswith("```"):
            code = not code
            continue
        if code and raw.rstrip().endswith("\\"):
            pending, start = pending + raw.rstrip()[:-1] + " ", start or number
            continue
        out.append(Line(name, start or number, pending + raw, code))
        pending, start = "", 0
    return out


def doc_lines() -> list[Line]:
    return [line for doc in DOCS for line in lines_of(doc.relative_to(REPO).as_posix(), doc.read_text())]


# Files whose leading comment block is read like the docs: the commands and paths a user copies from them.
HEADER_FILES = [REPO / "cluster.yaml"]  # the configs' comments are read by config_comment_lines


def header_lines(path: Path) -> list[Line]:
    """The comment block at the top of a YAML file, read as a shell block (``\\`` continues a command)."""
    header = []
    for raw in path.read_text().splitlines():
        if not raw.startswith("#"):
            break
        header.append(raw[1:].removeprefix(" "))
    block = lines_of(path.relative_to(REPO).as_posix(), "```\n" + "\n".join(header) + "\n```")
    return [dataclasses.replace(line, number=line.number - 1) for line in block]  # the opening ``` is line 1


def config_comment_lines() -> list[Line]:
    """The whole-line comments of every shipped config, as code lines (a command may continue with \\)."""
    out = []
    for path in CONFIG_FILES:
        kept = [re.sub(r"^\s*#\s?", "", raw) if raw.lstrip().startswith("#") else "" for raw in path.read_text().splitlines()]
        # Wrapped in a code fence: line numbers shift by one, which the fence's own line takes back.
        lines = lines_of(path.relative_to(REPO).as_posix(), "```\n" + "\n".join(kept) + "\n```")
        out += [dataclasses.replace(line, number=line.number - 1) for line in lines if line.text.strip()]
    return out


def where(line: Line) -> str:
    return f"{line.path}:{line.number}"


def is_placeholder(value: str) -> bool:
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_]*", value) or PLACEHOLDER.search(value) or value == "...")


# ---- commands ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    line: Line
    script: str  # jobs/train_genrm.py, benchmarks/..., or "-m module"
    args: list[str]


def commands(lines: list[Line]) -> tuple[list[Command], list[str]]:
    """Every ``python X.py ...`` / ``python -m M ...`` command line; shell variables set in a code block
    (NAME="...") are expanded in the lines after them. Returns (commands, parse problems)."""
    found, problems, variables = [], [], {}
    for line in lines:
        text = line.text
        if line.code:
            if m := re.fullmatch(r'\s*([A-Za-z_]\w*)="([^"]*)"\s*', text):
                variables[m.group(1)] = m.group(2)
                continue
            text = re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), m.group(0)), text)
        for m in re.finditer(r"(?<![\w.-])python3?\s+(?:-m\s+)?(?=[\w./-])", text):
            segment = text[m.start():]
            if not line.code:  # inline code: the command ends at its closing backtick
                segment = segment.split("`", 1)[0]
            # one token per placeholder, whatever it holds: configs/<eval config>.yaml
            segment = PLACEHOLDER.sub(lambda p: p.group(0).replace(" ", "_"), segment)
            try:
                tokens = shlex.split(segment, comments=True)
            except ValueError as e:
                problems.append(f"{where(line)}: cannot parse the command {segment.strip()!r} ({e})")
                continue
            for i, tok in enumerate(tokens):
                if tok in ("|", "||", "&&", ";", "&") or tok.startswith(")"):
                    tokens = tokens[:i]
                    break
            if len(tokens) < 2 or (tokens[1] == "-m" and len(tokens) < 3):
                continue
            if tokens[1] == "-m":
                found.append(Command(line, f"-m {tokens[2]}", tokens[3:]))
            elif tokens[1].endswith(".py"):
                found.append(Command(line, tokens[1], tokens[2:]))
    return found, problems


def check_scripts(cmds: list[Command]) -> list[str]:
    problems = []
    for c in cmds:
        if c.script.startswith("-m "):
            module = c.script[3:]
            if module.split(".")[0] in ("genrm_ray", "actors", "benchmarks", "tests") and module_file(module) is None:
                problems.append(f"{where(c.line)}: python -m {module}: no such module in the repository")
        elif not (REPO / c.script).is_file():
            problems.append(f"{where(c.line)}: python {c.script}: no such file in the repository")
    return problems


def job_of(c: Command) -> str | None:
    m = re.fullmatch(r"jobs/(\w+)\.py", c.script)
    return m.group(1) if m else None


def checkpoint_problem(path: str) -> str | None:
    """Why ``path`` is not a checkpoint the server can take (rule 3), or None."""
    if re.fullmatch(r"[A-Z][A-Z0-9_]*", path) or path.startswith(CLUSTER_ROOTS):
        return None
    if path.startswith(OUTPUT_ROOT):
        parts = path.rstrip("/").split("/")
        if len(parts) < 2 or not parts[1]:
            return f"--checkpoint {path}: name the run dir ({OUTPUT_ROOT}<run>)"
        rest = "/".join(parts[2:])
        if rest and rest not in RunDir.EXPORTS:
            exports = ", ".join(f"{OUTPUT_ROOT}<run>/{e}" for e in RunDir.EXPORTS)
            return (f"--checkpoint {path}: {rest!r} is not a model export; the server takes the run dir "
                    f"({OUTPUT_ROOT}<run>) or {exports}")
        return None
    if PLACEHOLDER.search(path):
        return None
    if not (REPO / path).exists():
        return f"--checkpoint {path}: neither a repository path, an output under {OUTPUT_ROOT} nor a placeholder"
    return None


def config_file_problem(path: str) -> str | None:
    """Why ``path`` (a --config value or a configs/ mention) names no file (rule 2), or None."""
    if PLACEHOLDER.search(path):
        return None
    if "*" in path:
        return None if glob.glob(str(REPO / path)) else f"{path}: matches no file in the repository"
    return None if (REPO / path).is_file() else f"{path}: no such file in the repository"


def config_class(job: str) -> type:
    module, name = JOB_CONFIGS[job]
    return getattr(importlib.import_module(module), name)


def field_type(cls: type, key: str) -> typing.Any:
    """The type of the (dotted) ``key`` in the dataclass tree ``cls``; a key below a dict field is
    that field's value type. LookupError names what is missing."""
    parts, tp = key.split("."), cls
    for i, part in enumerate(parts):
        if dataclasses.is_dataclass(tp):
            names = [f.name for f in dataclasses.fields(tp)]
            if part not in names:
                raise LookupError(f"unknown key {'.'.join(parts[:i + 1])!r}; valid keys at "
                                  f"{'.'.join(parts[:i]) or 'the top level'}: {', '.join(names)}")
            tp = typing.get_type_hints(tp)[part]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            raise LookupError(f"{'.'.join(parts[:i])!r} is a value, not a section")
    return tp


def placeholder_for(tp: typing.Any) -> str:
    """A YAML value of type ``tp``, standing in for a placeholder such as T or DIR."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return placeholder_for(next(a for a in args if a is not type(None)))
    if origin is Literal:
        return yaml.safe_dump(args[0]).split("\n")[0]
    if origin is list:
        return "[]"
    if origin is dict:
        return "{}"
    return {bool: "true", int: "1", float: "1.0", str: "x"}.get(tp, "x")


def override_problem(job: str, item: str) -> str | None:
    """Why the override ``item`` does not load into ``job``'s config (rule 4), or None."""
    cls = config_class(job)
    key, _, value = item.partition("=")
    try:
        tp = field_type(cls, key)
    except LookupError as e:
        return f"{item}: {cls.__name__} has no such key ({e})"
    parent = key.rpartition(".")[0]
    named_entry = bool(parent) and typing.get_origin(field_type(cls, parent)) is dict  # e.g. verifiers.X={...} or =null
    if dataclasses.is_dataclass(tp) and not named_entry:
        return f"{item}: {key!r} is a section of {cls.__name__}, not a value"
    if is_placeholder(value):
        value = placeholder_for(tp)
    try:
        load_config(cls, None, [f"{key}={value}"])
    except ConfigError as e:
        return f"{item}: does not load into {cls.__name__}: {e}"
    return None


def check_job_commands(cmds: list[Command]) -> list[str]:
    problems = []
    for c in cmds:
        job = job_of(c)
        if job is None:
            continue
        if job not in JOB_CONFIGS:
            problems.append(f"{where(c.line)}: {c.script}: no config class known for this job (JOB_CONFIGS)")
            continue
        args, options = iter(c.args), JOB_OPTIONS.get(job, set())
        for tok in args:
            if tok == "...":
                continue
            if tok in ("--config", *options):
                value = next(args, None)
                if value is None:
                    problems.append(f"{where(c.line)}: {tok} without a value")
                elif tok == "--config" and (p := config_file_problem(value)):
                    problems.append(f"{where(c.line)}: --config {p}")
                elif tok == "--checkpoint" and (p := checkpoint_problem(value)):
                    problems.append(f"{where(c.line)}: {p}")
            elif tok.startswith("-"):
                problems.append(f"{where(c.line)}: {c.script} has no option {tok} (its options: --config, "
                                f"{', '.join(sorted(options)) or 'none else'})")
            elif "=" in tok and not tok.startswith("="):
                if p := override_problem(job, tok):
                    problems.append(f"{where(c.line)}: {c.script} {p}")
                elif job == "serve_genrm" and tok.startswith("checkpoint=") and (p := checkpoint_problem(tok.split("=", 1)[1])):
                    problems.append(f"{where(c.line)}: {p}")
            else:
                problems.append(f"{where(c.line)}: {c.script}: {tok!r} is neither an option nor key=value")
    return problems


# ---- configs/ mentions ------------------------------------------------------------------------------


def check_config_mentions(lines: list[Line]) -> list[str]:
    problems = []
    for line in lines:
        text = PLACEHOLDER.sub(lambda p: p.group(0).replace(" ", "_"), line.text)
        for m in re.finditer(r"(?<![\w/.-])configs/[\w.*<>/-]*\.ya?ml\b", text):
            if p := config_file_problem(m.group(0)):
                problems.append(f"{where(line)}: {p}")
    return problems


# ---- reward URLs ------------------------------------------------------------------------------------


def served_routes() -> tuple[set[int], set[str]]:
    """Ports the shipped serve configs listen on, and every URL path they serve."""
    from genrm_ray.serving.config import ServeConfig

    routes = re.findall(r"""@api\.(?:get|post)\(\s*["']([^"']+)["']""", (REPO / "genrm_ray/serving/app.py").read_text())
    assert routes, "no routes found in genrm_ray/serving/app.py (the @api.get / @api.post decorators)"
    ports, prefixes = set(), set()
    for path in sorted((REPO / "configs" / "serve").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        if "applications" in raw:  # a Ray Serve config file
            ports.add(raw.get("http_options", {}).get("port", 8000))
            prefixes |= {app.get("route_prefix", "/") for app in raw["applications"]}
        else:
            cfg = load_config(ServeConfig, path)
            ports.add(cfg.http.port)
            prefixes.add(cfg.http.route_prefix)
    paths = {""}
    for prefix in prefixes:
        paths |= {prefix, prefix.rstrip("/")} | {prefix.rstrip("/") + r for r in (*routes, *FASTAPI_ROUTES)}
    return ports, paths


def check_reward_urls(lines: list[Line]) -> list[str]:
    ports, paths = served_routes()
    problems = []
    for line in lines:
        for m in re.finditer(r"""https?://[^\s`'"(){}\[\],]+""", line.text):
            url = m.group(0).rstrip(".:;")
            parsed = re.fullmatch(r"https?://([^/:]+)(?::([^/]+))?(/.*)?", url)
            if not parsed:
                continue
            port, path = parsed.group(2), parsed.group(3) or ""
            setting = REWARD_URL_SETTING.search(line.text[:m.start()])
            if not (setting or (port and port.isdigit() and int(port) in ports)):
                continue  # not the reward app (the Ray dashboard, the metrics export, a package index)
            if path not in paths:
                problems.append(f"{where(line)}: reward URL {url}: path {path!r} is not served with the shipped configs' "
                                f"route_prefix; use the base URL or one of {sorted(p for p in paths if p)}")
    return problems


# ---- repository paths and dotted names ---------------------------------------------------------------


def module_file(dotted: str) -> Path | None:
    base = REPO / dotted.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def top_level_names(path: Path) -> dict[str, ast.AST]:
    names: dict[str, ast.AST] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            names |= {t.id: node for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0]: node for a in node.names}
    return names


def class_attributes(node: ast.ClassDef) -> set[str]:
    attrs = set()
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            attrs.add(item.name)
        elif isinstance(item, ast.Assign):
            attrs |= {t.id for t in item.targets if isinstance(t, ast.Name)}
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            attrs.add(item.target.id)
    return attrs


def dotted_problem(dotted: str) -> str | None:
    """Why ``genrm_ray.a.b.Name.attr`` names nothing in the repository (rule 6), or None."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        path = module_file(".".join(parts[:cut]))
        if path is not None:
            break
    else:
        return f"{dotted}: no such module"
    rest = parts[cut:]
    if not rest:
        return None
    if (REPO / "/".join(parts[:cut + 1])).is_dir() or module_file(".".join(parts[:cut + 1])):
        return None
    names = top_level_names(path)
    if rest[0] not in names:
        what = "submodule or top-level name" if path.name == "__init__.py" else "top-level name"
        return f"{dotted}: {'.'.join(parts[:cut])} has no {what} {rest[0]!r}"
    node = names[rest[0]]
    if len(rest) > 1 and isinstance(node, ast.ClassDef) and rest[1] not in class_attributes(node):
        return f"{dotted}: class {rest[0]} has no attribute {rest[1]!r}"
    return None


REPO_PATH = re.compile(r"(?<![\w/.-])(?:genrm_ray|actors|jobs|tests|benchmarks|requirements|docs|experiments)/[\w./*<>-]*")
DOTTED = re.compile(r"(?<![\w/.-])(?:genrm_ray|actors)(?:\.\w+)+(?::\w+)?")


def check_repo_names(lines: list[Line]) -> list[str]:
    problems = []
    for line in lines:
        for m in REPO_PATH.finditer(line.text):
            path = m.group(0).rstrip(".")
            if PLACEHOLDER.search(path):
                continue
            exists = glob.glob(str(REPO / path)) if "*" in path else (REPO / path).exists()
            if not exists:
                problems.append(f"{where(line)}: {path}: no such file or folder in the repository")
        for m in DOTTED.finditer(line.text):
            dotted, _, attr = m.group(0).partition(":")
            if p := dotted_problem(dotted + (f".{attr}" if attr else "")):
                problems.append(f"{where(line)}: {p}")
        for m in re.finditer(r"\]\(([^)\s]+)\)", line.text):
            target = m.group(1).split("#")[0]
            if target and not re.match(r"[a-z]+:", target) and not (REPO / line.path).parent.joinpath(target).exists():
                problems.append(f"{where(line)}: link target {target}: no such file")
    return problems


# ---- the docs ----------------------------------------------------------------------------------------


def report(problems: list[str]) -> str:
    return f"{len(problems)} problem(s) in the docs:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def lines() -> list[Line]:
    return doc_lines() + config_comment_lines()


@pytest.fixture(scope="module")
def cmds(lines) -> list[Command]:
    found, problems = commands(lines)
    assert not problems, report(problems)
    return found


def test_the_docs_are_there_and_hold_commands(cmds):
    assert (REPO / "README.md").is_file() and len(DOCS) >= 6, DOCS
    assert {job_of(c) for c in cmds} >= set(JOB_CONFIGS), "a job's commands vanished from the docs"


def test_every_python_script_and_module_exists(cmds):
    problems = check_scripts(cmds)
    assert not problems, report(problems)


def test_every_configs_path_exists(lines):
    problems = check_config_mentions(lines)
    assert not problems, report(problems)


def test_job_commands_use_existing_configs_checkpoints_and_keys(cmds):
    problems = check_job_commands(cmds)
    assert not problems, report(problems)


def test_reward_urls_use_paths_the_shipped_route_prefix_serves(lines):
    problems = check_reward_urls(lines)
    assert not problems, report(problems)


def test_repository_paths_modules_and_names_exist(lines):
    problems = check_repo_names(lines)
    assert not problems, report(problems)


def test_cluster_yaml_and_config_headers_name_what_exists():
    # The same rules for the comment blocks that head cluster.yaml and every config: scripts, config
    # files, checkpoints, override keys, repository paths.
    lines = [line for path in HEADER_FILES for line in header_lines(path)]
    found, problems = commands(lines)
    problems += check_scripts(found) + check_job_commands(found) + check_config_mentions(lines) + check_repo_names(lines)
    assert not problems, report(problems)
    assert {c.script for c in commands(header_lines(REPO / "cluster.yaml"))[0]} == {"jobs/train_genrm.py"}


def test_header_checks_catch_a_missing_config(tmp_path, monkeypatch):
    bad = tmp_path / "cluster.yaml"
    bad.write_text("# ray job submit -- python jobs/train_genrm.py \\\n#     --config configs/genrm_1p5b_zero3_8gpu.yaml\n"
                   "cluster_name: x\n")
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    lines = header_lines(bad)
    assert lines[0].number == 1
    monkeypatch.undo()
    assert any("configs/genrm_1p5b_zero3_8gpu.yaml: no such file" in p for p in check_config_mentions(lines))


# ---- the rules themselves stay strict ------------------------------------------------------------------


def _problems(text: str) -> list[str]:
    lines = lines_of("doc.md", text)
    found, problems = commands(lines)
    return (problems + check_scripts(found) + check_job_commands(found) + check_config_mentions(lines)
            + check_reward_urls(lines) + check_repo_names(lines))


@pytest.mark.parametrize("text", [
    "```\npython jobs/train_genrm.py --config tests/configs/test_tiny.yaml genrm.train.lr=1e-3 run_dir=runs/x\n```",
    "```\npython jobs/serve_genrm.py --checkpoint runs/demo --config configs/serve/gpu.yaml\n```",
    "```\npython jobs/serve_genrm.py --checkpoint runs/<run>   # a run dir\n```",
    "Serve it (`python jobs/serve_genrm.py --checkpoint runs/ll-cot/genrm/hf_model`), then",
    "```\nray job submit --working-dir . -- python jobs/eval_best_of_n.py --config configs/<eval config>.yaml\n```",
    "```\nP=\"genrm.deepspeed.zero_stage=2\"\npython jobs/train_genrm.py $P \\\n    run_dir=runs/a\n```",
    "```\npython jobs/eval_best_of_n.py 'models.extra_direct={\"GenRM (lambda=0)\": runs/g}' pool.temperature=T\n```",
    "export GENRM_REWARD_URL=http://10.0.0.5:8000 and `--remote_rm_url http://host:port/get_reward`",
    "dashboard at http://127.0.0.1:8265, metrics at `http://127.0.0.1:<MetricsExportPort>/metrics`",
    "`genrm_ray.scoring.CotConfig`, `genrm_ray.runs.RunDir.hf_model`, `actors/reward_actor.py`, [x](docs/rl.md)",
])
def test_good_lines_pass(text):
    assert _problems(text) == []


@pytest.mark.parametrize("text, expected", [
    ("`python jobs/train_genrm.py --config configs/genrm_last_leter_cpu.yaml`", "genrm_last_leter_cpu.yaml: no such file"),
    ("the default is configs/grpo_last_letter.yaml", "configs/grpo_last_letter.yaml: no such file"),
    ("see configs/serve/cpu.yml", "configs/serve/cpu.yml: no such file"),
    ("see configs/serve/cpu_big.yaml", "configs/serve/cpu_big.yaml: no such file"),
    ("the study's experiments/arithmetic/genrm.yaml", "experiments/arithmetic/genrm.yaml: no such file"),
    ("```\npython jobs/serve_genrm.py --checkpoint runs/<run>/genrm\n```", "'genrm' is not a model export"),
    ("```\npython jobs/serve_genrm.py --checkpoint models/x\n```", "neither a repository path"),
    ("```\npython jobs/train_grpo.py train.zero_stage=3\n```", "GRPOConfig has no such key"),
    ("```\npython jobs/train_grpo.py train.deepspeed.zero_stage=4\n```", "must be one of [2, 3]"),
    ("```\npython jobs/eval_best_of_n.py pool.size=32\n```", "EvalConfig has no such key"),
    ("```\npython jobs/eval_best_of_n.py cot.k_curve=[1]\n```", "EvalConfig has no such key"),
    ("```\npython jobs/serve_genrm.py --checkpoint DIR scoring.default_k=4\n```", "ServeConfig has no such key"),
    ("```\npython jobs/train_genrm.py eval.cot_k=4\n```", "GenRMJobConfig has no such key"),
    ("```\npython jobs/train_genrm.py --resume\n```", "has no option --resume"),
    ("```\npython jobs/trian_genrm.py\n```", "no such file in the repository"),
    ('RewardClient(url="http://head:8000/genrm")', "path '/genrm' is not served"),
    ("--reward.remote_url http://10.0.0.5:9000/genrm/get_reward", "path '/genrm/get_reward' is not served"),
    ("see `genrm_ray/pipeline.py`", "genrm_ray/pipeline.py: no such file"),
    ("`genrm_ray.pipeline.GenRMJobConfig`", "genrm_ray has no submodule or top-level name 'pipeline'"),
    ("`genrm_ray.scoring.CotSettings`", "genrm_ray.scoring has no top-level name 'CotSettings'"),
    ("tests/test_jobs.py checks it", "tests/test_jobs.py: no such file"),
])
def test_bad_lines_fail_naming_the_line_and_the_problem(text, expected):
    problems = _problems(text)
    assert problems and all(p.startswith("doc.md:") for p in problems), problems
    assert any(expected in p for p in problems), problems
