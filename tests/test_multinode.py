"""Two Ray nodes on one machine: GenRM training, a Serve replica and a GRPO step across them, every
stage reading its inputs from the run storage and nothing from another node's scratch.

The cluster is this module's own: a head (``node_a``) and a worker (``node_b``) started with
``ray start`` the way the session's cluster is (tests/fixtures/ray_cluster.py), each with its own Ray
temp dir, its own TMPDIR (the node's local scratch: where a worker writes what stays on its node) and
its own resources. The stages run as the jobs themselves (jobs/train_genrm.py, jobs/serve_genrm.py,
jobs/train_grpo.py), each a driver process on the head, as on a real cluster. This test process never
connects to this cluster, so the session's cluster and its connection (the shared reward app, its
handles) stay as they are: the two clusters only share the machine.

Placement is made certain by resources: both nodes advertise ``train_slot: 1`` and a training worker
asks for one, so the two workers land one on each node; the Serve replica asks for half of ``node_b``;
the GRPO policy rank asks for a share of ``node_b`` and the rollout engine for more CPUs than ``node_b``
has left.
A local folder stands in for the shared mount (``storage``). Between stages both scratch dirs are
emptied, as a node's disk is out of reach of the others: a stage that still read a path under one
would fail, and every path a stage reports resolving must lie under the storage.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.ray_cluster import _wait_for_port, free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
NODES = {"node_a": {"CPU": 2, "train_slot": 1}, "node_b": {"CPU": 2, "train_slot": 1}}


@dataclass
class TwoNodes:
    address: str
    dashboard: str
    scratch: dict[str, Path]  # node -> its TMPDIR
    storage: Path  # stands in for the shared mount
    env: dict[str, str]  # a driver on the head: reaches this cluster, scratch of node_a

    def empty_scratch(self) -> None:
        """What one node wrote locally is not on any other node: gone before the next stage reads."""
        for folder in self.scratch.values():
            shutil.rmtree(folder)
            folder.mkdir()

    def assert_in_storage(self, *paths: str | Path) -> None:
        for path in paths:
            resolved = Path(path).resolve()
            for node, scratch in self.scratch.items():
                assert not resolved.is_relative_to(scratch.resolve()), f"{path} is under {node}'s scratch dir"
            assert resolved.is_relative_to(self.storage.resolve()), f"{path} is not under the storage {self.storage}"

    def _state(self, kind: str) -> list[dict]:
        """`ray list <kind>` over the state API (dead actors too); [] while there is nothing to list."""
        out = subprocess.run([RAY, "list", kind, "--detail", "--format", "json", "--limit", "10000",
                              "--address", self.dashboard], env=self.env | {"RAY_API_SERVER_ADDRESS": self.dashboard},
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.lstrip().startswith("[") else []

    def actors(self) -> list[dict]:
        """Every actor this cluster ran (dead ones too), with the node it ran on."""
        return self._state("actors")

    def node_ids(self) -> dict[str, str]:
        return {name: n["node_id"] for n in self._state("nodes") if n["state"] == "ALIVE" for name in NODES
                if name in n.get("resources_total", {})}


def _start_node(name: str, base: Path, env: dict[str, str], head_address: str | None, log_dir: Path) -> subprocess.Popen:
    node_env = env | {"TMPDIR": str(base / name / "tmp"), "RAY_TMPDIR": str(base / name / "ray")}
    resources = dict(NODES[name])
    cpus = resources.pop("CPU")
    cmd = [RAY, "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus), "--num-gpus", "0",
           "--resources", json.dumps({name: 1, **resources}), "--temp-dir", str(base / name / "ray"),
           "--disable-usage-stats", "--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
           "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
           "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port())]
    if head_address is None:
        cmd += ["--head", "--port", env["GENRM_MN_GCS_PORT"], "--dashboard-host", "127.0.0.1", "--include-dashboard", "true",
                "--dashboard-port", env["GENRM_MN_DASH_PORT"], "--ray-client-server-port", str(free_port())]
    else:
        cmd += ["--address", head_address]
    log = open(log_dir / f"ray-start-{name}.log", "w")
    return subprocess.Popen(cmd, env=node_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(procs: list[subprocess.Popen]) -> None:
    # All at once: each node's `ray start --block` takes up to its 10 s grace to stop its processes.
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        try:  # stragglers of this node's own process group only
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    # Short base path: Ray's Unix sockets live under each temp dir and must stay < 108 bytes.
    base = Path(tempfile.mkdtemp(prefix="gmn-", dir="/tmp"))
    for name in NODES:
        (base / name / "tmp").mkdir(parents=True)
    logs = tmp_path_factory.mktemp("multinode-logs")
    token = logs / "auth_token"
    token.write_text(secrets.token_hex(32))
    gcs, dash = free_port(), free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "PYTHONPATH": str(REPO),
           "GENRM_MN_GCS_PORT": str(gcs), "GENRM_MN_DASH_PORT": str(dash), "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
           # On a loaded 2-core box a node's agents take about a minute to start, Ray's default wait (60 s).
           "RAY_raylet_start_wait_time_s": "300"}
    env.pop("RAY_ADDRESS", None)
    procs = [_start_node("node_a", base, env, None, logs)]
    try:
        _wait_for_port(gcs, procs[0], timeout=120)
        _wait_for_port(dash, procs[0], timeout=120)
        address = f"127.0.0.1:{gcs}"
        driver_env = env | {"TMPDIR": str(base / "node_a" / "tmp"), "RAY_TMPDIR": str(base / "node_a" / "ray"),
                            "RAY_ADDRESS": address}
        # The storage is ours too (not pytest's tmp dirs, which a concurrent pytest session may prune).
        (base / "shared").mkdir()
        cluster = TwoNodes(address, f"http://127.0.0.1:{dash}", {n: base / n / "tmp" for n in NODES}, base / "shared", driver_env)

        def wait_for(names: set[str]) -> None:
            # Generous: on a 2-core box under load a node takes minutes to register (one took 5 at load 45).
            deadline = time.monotonic() + 600
            while not names <= set(cluster.node_ids()):
                for name, proc in zip(NODES, procs):
                    assert proc.poll() is None, f"`ray start` of {name} exited: {(logs / f'ray-start-{name}.log').read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"{sorted(names)} did not come up within 600 s"
                time.sleep(2)

        wait_for({"node_a"})  # a worker node that starts before the head registered gives up
        procs.append(_start_node("node_b", base, env, address, logs))
        wait_for(set(NODES))
        yield cluster
    finally:
        _stop(procs)
        for name in NODES:  # Ray's own logs of both nodes outlive the run, beside the `ray start` logs
            if (base / name / "ray" / "session_latest" / "logs").is_dir():
                shutil.copytree(base / name / "ray" / "session_latest" / "logs", logs / f"{name}-ray-logs", dirs_exist_ok=True,
                                ignore_dangling_symlinks=True)
        print(f"[multinode] logs: {logs}")
        shutil.rmtree(base, ignore_errors=True)


def _job(cluster: TwoNodes, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=cluster.env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args[0]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.fixture(scope="module")
def trained(two_nodes, tmp_path_factory):
    """A GenRM training run (given dataset files, the tiny model) with storage = the shared folder."""
    from genrm_ray.models import create_tiny_model
    from tests.test_train_core import write_sft_files

    shared = two_nodes.storage
    files = write_sft_files(shared / "data", n=16)
    model = create_tiny_model(shared / "models" / "tiny", size="tiny")
    run_dir = two_nodes.scratch["node_a"] / "runs" / "genrm-mn"  # the driver's local run dir, on the head
    t0 = time.perf_counter()
    _job(two_nodes, "jobs/train_genrm.py", "--config", "tests/configs/test_tiny.yaml", f"run_dir={run_dir}", f"storage={shared / 'runs'}",
         f"genrm.model.path={model}", f"genrm.data.verify_direct={files['verify_direct']}", f"genrm.data.correct={files['correct']}",
         f"eval.heldout={files['verify_direct']}", "genrm.train.max_steps=2", "genrm.deepspeed.zero_stage=2",
         "genrm.data.max_length=512", "genrm.scaling.resources_per_worker={CPU: 1, train_slot: 1}", f"ray_address={two_nodes.address}")
    print(f"[multinode] training job: {time.perf_counter() - t0:.0f} s")
    scratch_files = {node: sorted(p.name for p in folder.rglob("worker_*.log")) for node, folder in two_nodes.scratch.items()}
    return {"run": shared / "runs" / "genrm-mn", "run_dir": run_dir, "model": model, "scratch_logs": scratch_files}


def test_genrm_training_spreads_over_both_nodes_and_exports_to_storage(two_nodes, trained):
    run = trained["run"]
    nodes = two_nodes.node_ids()
    workers = [a for a in two_nodes.actors() if a["class_name"] == "RayTrainWorker"]
    assert {a["node_id"] for a in workers} == set(nodes.values()), workers  # one worker on each node
    # Each worker wrote its log in its own node's scratch, then to the storage: one log per node.
    assert sorted(sum(trained["scratch_logs"].values(), [])) == ["worker_0.log", "worker_1.log"]
    assert all(len(logs) == 1 for logs in trained["scratch_logs"].values()), trained["scratch_logs"]
    for name in ("summary.json", "genrm/hf_model/config.json", "genrm/hf_model/model.safetensors",
                 "genrm/metrics.jsonl", "genrm/worker_0.log", "genrm/worker_1.log"):
        assert (run / name).is_file(), name
    assert list((run / "genrm" / "ray").glob("*/checkpoint_*")), "Ray Train's checkpoint is not in the storage"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["num_workers"] == 2
    two_nodes.assert_in_storage(summary["hf_model"], summary["checkpoint"])
    assert json.loads((trained["run_dir"] / "summary.json").read_text()) == summary  # the driver's copy


@pytest.fixture(scope="module")
def served(two_nodes, trained):
    """jobs/serve_genrm.py serving the run from storage, its one replica on the worker node."""
    import requests

    two_nodes.empty_scratch()  # training's local files are gone: serving has the storage only
    port = free_port()
    log = open(two_nodes.storage.parent / "serve.log", "w")  # beside the nodes' folders, not in a scratch dir
    proc = subprocess.Popen([sys.executable, "jobs/serve_genrm.py", "--config", "tests/configs/serve_test.yaml",
                             "--checkpoint", str(trained["run"]), "deployment.resources={node_b: 0.5}", "deployment.max_replicas=1",
                             "http.app_name=genrm-mn", f"http.port={port}", "http.auth_token_env=", "http.route_prefix=/"],
                            cwd=REPO, env=two_nodes.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    # Generous: a vLLM engine under a loaded 2-core box took minutes to start.
    t0, deadline = time.perf_counter(), time.monotonic() + 900
    try:
        while True:
            assert proc.poll() is None, f"serve_genrm.py exited {proc.returncode}: {Path(log.name).read_text()[-4000:]}"
            assert time.monotonic() < deadline, (f"no healthy replica within 900 s: {Path(log.name).read_text()[-4000:]}\n"
                                                 f"actors: {[(a['class_name'], a['state']) for a in two_nodes.actors()]}")
            try:
                if requests.get(f"{base}/healthz", timeout=30).status_code == 200:
                    break
            except requests.RequestException:  # no proxy yet, or one still starting
                pass
            time.sleep(2)
        print(f"[multinode] serve ready: {time.perf_counter() - t0:.0f} s")
        yield {"base": base, "app": "genrm-mn"}
    finally:
        proc.send_signal(signal.SIGTERM)  # the job deletes its app and disconnects
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_a_replica_on_the_worker_node_serves_the_export_from_storage(two_nodes, trained, served):
    import requests

    replicas = [a for a in two_nodes.actors() if a["class_name"].startswith("ServeReplica:genrm-mn") and a["state"] == "ALIVE"]
    assert [a["node_id"] for a in replicas] == [two_nodes.node_ids()["node_b"]], replicas
    card = requests.get(f"{served['base']}/v1/models", timeout=30).json()["data"][0]
    two_nodes.assert_in_storage(card["checkpoint"])
    assert Path(card["checkpoint"]) == trained["run"] / "genrm" / "hf_model" and card["id"] == "genrm-mn"
    item = {"prompt": "Take the last letters of the words in \"ab cd\" and concatenate them.", "response": "The answer is bd."}
    body = requests.post(f"{served['base']}/v1/rewards", json={"items": [item], "mode": "direct"}, timeout=120).json()
    assert 0.0 <= body["rewards"][0] <= 1.0, body


def test_a_grpo_step_places_its_actors_across_the_nodes(two_nodes, trained, served):
    two_nodes.empty_scratch()
    shared = two_nodes.storage
    run_dir = two_nodes.scratch["node_a"] / "runs" / "grpo-mn"
    t0 = time.perf_counter()
    _job(two_nodes, "jobs/train_grpo.py", "--config", "tests/configs/grpo_test.yaml", f"run_dir={run_dir}", f"storage={shared / 'runs'}",
         f"models.from_run={trained['run']}", f"models.policy={trained['model']}", "reward.source=genrm_direct",
         f"reward.app_name={served['app']}", "train.steps=1", "eval.every=1", "task.n_heldout=2", "checkpoint_every=1",
         "train.resources_per_worker={CPU: 0.25, node_b: 0.1}", "rollout.num_cpus=1.5", "train.placement_timeout_s=300",
         f"ray_address={two_nodes.address}")
    print(f"[multinode] GRPO job: {time.perf_counter() - t0:.0f} s")
    nodes = two_nodes.node_ids()
    where = {a["class_name"]: a["node_id"] for a in two_nodes.actors() if a["class_name"] in ("PolicyWorker", "RolloutActor")}
    assert where == {"PolicyWorker": nodes["node_b"], "RolloutActor": nodes["node_a"]}, where
    config = json.loads((run_dir / "grpo_config.json").read_text())  # what the job resolved its inputs to
    two_nodes.assert_in_storage(config["models"]["policy"], config["models"]["verifier"])
    stored = shared / "runs" / "grpo-mn"
    assert (stored / "checkpoints" / "step_1" / "state.json").is_file() and (stored / "hf_model" / "config.json").is_file()
    summary = json.loads((stored / "summary.json").read_text())
    assert summary["steps"] == 1
    two_nodes.assert_in_storage(summary["hf_model"])
