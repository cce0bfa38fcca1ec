"""Where a run's outputs are: the one answer to "which folder is this run's HF export, its policy, its
summary", and the one check that a folder is a Hugging Face model.

A model path in any config may name the model folder itself or a run folder that holds one:

    runs/<genrm run>/genrm/hf_model   jobs/train_genrm.py's verifier export; its summary.json names the
                                      policy the data stage trained or used (data.policy)
    runs/<run>/hf_model               jobs/train_grpo.py's policy, or a bare genrm_ray.train output dir

Where runs live (the jobs' ``storage`` setting): "" keeps everything in the local run dir. A shared
path (an EFS / NFS mount every node has) or a URI (``s3://bucket/prefix``, ``gs://...``; any
filesystem pyarrow opens) holds what outlives the job and what other nodes read: Ray Train's
checkpoints, the HF export, metrics.jsonl, summary.json, the GRPO policy's checkpoints and export,
under ``<storage>/<run name>/`` in the layout above. The local run dir keeps the driver's own files
(config, plots, logs). A run in storage is named by its location, ``/mnt/shared/runs/<run>`` or
``s3://bucket/runs/<run>``, wherever a model path is taken; a process that loads weights from a URI
copies the export into its own node's cache first (``local_model_dir``).
A run folder also records its job's config (RUN_CONFIGS), and so the task it trained on (RunDir.task).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A run's location: a local (or mounted) folder as a Path, or a URI as a str.
Location = Path | str


class RunDirError(ValueError):
    """A path that is neither a Hugging Face model folder nor a run folder holding one."""


class StorageError(ValueError):
    """A storage location that cannot be opened (unknown scheme, missing credentials, no such bucket)."""


# --- locations: local folders and URIs through one interface -----------------------------------

def is_uri(location: Location) -> bool:
    """``s3://...``, ``gs://...``, ``file://...``: a location pyarrow opens, not a local path."""
    return "://" in str(location)


def as_location(location: str | Path) -> Location:
    """A URI as it is (trailing slashes dropped), a local path as an absolute Path (workers run elsewhere)."""
    text = str(location)
    return text.rstrip("/") if is_uri(text) else Path(text).expanduser().resolve()


def join(location: Location, *parts: str) -> Location:
    """``location/part/...`` for both kinds."""
    if is_uri(location):
        return "/".join([str(location).rstrip("/"), *parts])
    return Path(location).joinpath(*parts)


def filesystem(location: Location, key: str = "storage"):
    """(pyarrow FileSystem, path inside it) for ``location``; StorageError naming ``key`` if it cannot open."""
    import pyarrow
    import pyarrow.fs as pafs

    if not is_uri(location):
        return pafs.LocalFileSystem(), str(Path(location).resolve())
    try:
        return pafs.FileSystem.from_uri(str(location))
    except (pyarrow.ArrowException, OSError, ValueError) as e:
        raise StorageError(f"{key}: cannot open {location}: {e}") from None


def is_file(location: Location) -> bool:
    if not is_uri(location):
        return Path(location).is_file()
    import pyarrow.fs as pafs

    fs, path = filesystem(location)
    return fs.get_file_info(path).type == pafs.FileType.File


def read_text(location: Location) -> str:
    if not is_uri(location):
        return Path(location).read_text()
    fs, path = filesystem(location)
    with fs.open_input_stream(path) as f:
        return f.read().decode()


def write_text(location: Location, text: str) -> None:
    """Write a small file (summary.json, state.json), creating its folder."""
    if not is_uri(location):
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        Path(location).write_text(text)
        return
    fs, path = filesystem(location)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(text.encode())


def upload_dir(local: Path, location: Location) -> None:
    """Copy the folder ``local`` to ``location`` (replacing what was there: no stale files of an earlier run)."""
    if not is_uri(location):
        dest = Path(location)
        if dest.resolve() != Path(local).resolve():
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(local, dest)
        return
    import pyarrow.fs as pafs

    fs, path = filesystem(location)
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        fs.delete_dir(path)
    fs.create_dir(path, recursive=True)
    pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def local_model_dir(location: Location, key: str = "checkpoint") -> Path:
    """A folder on this node holding the model at ``location``: the folder itself when it is local or
    mounted; for a URI, a copy in this node's cache (<cache>/storage/<hash of the URI and the files'
    sizes and times>: downloaded once per version of the export)."""
    if not is_uri(location):
        return Path(location)
    import pyarrow.fs as pafs

    from genrm_ray import env

    fs, path = filesystem(location, key)
    files = [i for i in fs.get_file_info(pafs.FileSelector(path, recursive=True)) if i.type == pafs.FileType.File]
    if not any(i.path == f"{path.rstrip('/')}/config.json" for i in files):
        raise RunDirError(f"{key}: {location} is not a Hugging Face model dir (no config.json)")
    version = hashlib.sha256(repr([str(location)] + sorted((i.path, i.size, i.mtime_ns) for i in files)).encode())
    out = env.cache_dir() / "storage" / f"{str(location).rstrip('/').rsplit('/', 1)[-1]}-{version.hexdigest()[:16]}"
    done = out / ".genrm_download_done"
    if done.is_file():
        return out
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        pafs.copy_files(path, str(tmp), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        (tmp / done.name).write_text(str(location) + "\n")
        try:
            tmp.rename(out)
        except OSError:  # another process on this node finished the same download first
            if not done.is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# --- run folders --------------------------------------------------------------------------------

def is_hf_model_dir(path: Location) -> bool:
    """A saved Hugging Face model: a folder with config.json (weights and tokenizer sit beside it)."""
    return is_file(join(as_location(path) if is_uri(path) else Path(path), "config.json"))


def require_hf_model_dir(path: Location, key: str) -> Location:
    """``path`` (a Path, or the URI as it is) if it is an HF model folder, else RunDirError naming ``key``."""
    if not is_hf_model_dir(path):
        raise RunDirError(f"{key}: {path} is not a Hugging Face model dir (no config.json)")
    return as_location(path) if is_uri(path) else Path(path)


# The config a job writes into its run folder (genrm_ray.launch.run_dir), and where the task's name is in it.
RUN_CONFIGS = {"job_config.json": ("data", "task", "name"), "grpo_config.json": ("task", "name")}


@dataclass(frozen=True)
class RunDir:
    path: Location

    # The exports a run folder can hold, most specific first.
    EXPORTS = ("genrm/hf_model", "hf_model")

    @property
    def summary_file(self) -> Location:
        return join(self.path, "summary.json")

    def summary(self) -> dict[str, Any]:
        return json.loads(read_text(self.summary_file)) if is_file(self.summary_file) else {}

    def hf_model(self) -> Location | None:
        """The run's model export, or None."""
        return next((join(self.path, e) for e in self.EXPORTS if is_hf_model_dir(join(self.path, e))), None)

    def policy(self) -> Location | None:
        """The policy a GenRM training run used (summary.json's data.policy), or None."""
        policy = self.summary().get("data", {}).get("policy")
        return (policy if is_uri(policy) else Path(policy)) if policy else None

    def task(self) -> str | None:
        """The task the run trained on, as its job recorded it (RUN_CONFIGS in the run folder, or
        summary.json's ``task``, which a run in storage carries), or None."""
        for name, keys in RUN_CONFIGS.items():
            if not is_file(join(self.path, name)):
                continue
            value: Any = json.loads(read_text(join(self.path, name)))
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, str) and value:
                return value
        recorded = self.summary().get("task")
        return recorded.get("name") if isinstance(recorded, dict) else None

    def task_options(self) -> dict[str, Any]:
        """The generator settings of the run's task (a reasoning-gym task's ``options``) as summary.json
        records them; {} when it records none."""
        recorded = self.summary().get("task")
        options = recorded.get("options") if isinstance(recorded, dict) else None
        return dict(options) if isinstance(options, dict) else {}

    @classmethod
    def holding(cls, path: str | Path) -> RunDir:
        """The run folder ``path`` belongs to: ``path`` itself, or the run one of whose EXPORTS it is."""
        if is_uri(path):
            text = str(path).rstrip("/")
            for export in cls.EXPORTS:
                if text.endswith("/" + export):
                    return cls(text[: -len(export) - 1])
            return cls(text)
        p = Path(path).resolve()
        for export in cls.EXPORTS:
            depth = len(Path(export).parts)
            if p.parts[-depth:] == Path(export).parts:
                return cls(p.parents[depth - 1])
        return cls(p)

    def is_genrm_run(self) -> bool:
        """A jobs/train_genrm.py run (a GRPO run's summary has no data section)."""
        # Object stores have no folders: there the verifier's export marks a GenRM run.
        genrm = join(self.path, "genrm")
        has_genrm = is_hf_model_dir(join(genrm, "hf_model")) if is_uri(genrm) else Path(genrm).is_dir()
        return has_genrm or "data" in self.summary()


def resolve_model_dir(path: Location, key: str) -> Location:
    """The HF model folder ``path`` names: the folder itself, or the export of the run it holds."""
    p = as_location(path) if is_uri(path) else Path(path)
    if is_hf_model_dir(p):
        return p
    export = RunDir(p).hf_model()
    if export is None:
        raise RunDirError(f"{key}: {path} is neither a Hugging Face model dir nor a run dir holding one "
                          f"({' or '.join(RunDir.EXPORTS)}; no config.json found)")
    return export


def resolve_policy_dir(path: Location, key: str) -> Location:
    """The policy's HF folder: ``path`` itself, or the policy a GenRM training run used. A GenRM run
    never resolves to its own verifier export: that is not the policy."""
    run = RunDir(as_location(path) if is_uri(path) else Path(path))
    if not is_hf_model_dir(path) and run.is_genrm_run():
        policy = run.policy()
        if policy is None:
            raise RunDirError(f"{key}: {path} is a GenRM run dir whose summary.json names no policy "
                              "(data.policy); give the policy's HF dir instead")
        return resolve_model_dir(policy, f"{key} (from {run.summary_file})")
    return resolve_model_dir(path, key)
