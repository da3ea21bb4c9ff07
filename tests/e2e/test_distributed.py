"""Data parallelism for real: two processes started by `accelerate launch` on the CPU, smoke profile, give the
record a single process gives (same key, split, samples; training equivalent up to data order), written once.

accelerate 1.15's `--cpu --num_processes 2` starts ONE process unless an MPI host file is configured; its torchrun
path (`--multi_gpu`) with no visible GPU runs two CPU processes over gloo, which is what this test launches.

One launched pair serves every end-to-end check here (the launches dominate the runtime). The run's settings make
the checks bite: `ranking.k=200` puts enough targets inside the ranked lists that `target_ranks` tells the samples
apart; `preference.batch_size=16` (8 pairs per process) and `causaldpo.min_samples=2` let DBSCAN find two
pseudo-environments on some steps, so CausalDPO's projection g has a gradient to synchronise. The collectives
themselves are checked below over real gloo process groups of 2 and 3 processes."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from methods.train import distributed

ROOT = Path(__file__).resolve().parents[2]
K = 200
METHODS = ("sft", "causaldpo", "mostpop", "random")
DETERMINISTIC = ("mostpop", "random")  # rankings that do not depend on training floats: equal row for row
SETTINGS = [f"ranking.k={K}", "preference.batch_size=16", "causaldpo.min_samples=2"]


def test_gather_and_batch_split_without_a_launcher_are_identities():
    assert distributed.world_size() == 1 and distributed.is_main()
    assert distributed.gather_rows([3, 1, 2], 3) == [3, 1, 2]
    assert distributed.per_device(16) == 16


def test_a_batch_that_does_not_split_over_the_processes_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="batch size 16 does not divide over 3 processes"):
        distributed.per_device(16)
    assert distributed.per_device(12) == 4


@pytest.mark.parametrize("world", ["1", "2"])
def test_mean_gradients_without_a_process_group_leaves_every_gradient_alone(monkeypatch, world):
    """WORLD_SIZE alone (a launcher's variable, no initialised group) is not enough to start a collective."""
    monkeypatch.setenv("WORLD_SIZE", world)
    assert not dist.is_initialized()
    used, unused = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    grad = torch.tensor([1.0, -2.0, 3.0])
    used.grad = grad
    distributed.mean_gradients([used, unused])
    assert used.grad is grad and torch.equal(grad, torch.tensor([1.0, -2.0, 3.0]))
    assert unused.grad is None   # no zeros are made up either


# --- real gloo process groups ------------------------------------------------------------------------------------
# Plain subprocesses rather than torch.multiprocessing's spawn: a spawned child re-imports this test module, hence
# the whole `methods` package (~10 s of imports per process, over a minute for the five); this worker imports torch
# and `methods/train/distributed.py` alone (the package __init__ files are bypassed, the module keeps its name).
# The group meets through a file (init_method file://), so no port is needed.

TOTALS = (7, 11, 2, 0)   # none divides over 2 or 3 processes except 0; with 2 rows and 3 processes one shard is empty

WORKER = r"""
import os, pickle, sys, types
from datetime import timedelta

root, rank, world, init_file, out_dir, totals = sys.argv[1:7]
rank, world = int(rank), int(world)
os.environ.update(WORLD_SIZE=str(world), RANK=str(rank))   # what torchrun sets; `distributed` reads them
for name, folder in (("methods", "methods"), ("methods.train", "methods/train")):
    package = types.ModuleType(name)
    package.__path__ = [os.path.join(root, folder)]
    sys.modules[name] = package
import torch
import torch.distributed as dist
from methods.train import distributed

def rows(n):   # as PreparedCell.rank_sharded gathers them, (top-k list, valid flag), each row unlike every other
    return [([i, 100 + i, 200 + i], i % 3 != 1) for i in range(n)]

dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=world,
                        timeout=timedelta(seconds=60))
try:
    gathered = {n: distributed.gather_rows(rows(n)[rank::world], n) for n in map(int, totals.split(","))}
    shared = torch.nn.Parameter(torch.zeros(3))            # every rank has a gradient
    shared.grad = torch.tensor([1.0, -1.0, 0.5]) * (rank + 1)
    only_main = torch.nn.Parameter(torch.zeros(2))         # unused on the other ranks (grad None there)
    if rank == 0:
        only_main.grad = torch.tensor([6.0, -3.0])
    frozen = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
    distributed.mean_gradients([shared, only_main, frozen])
    grads = {"shared": shared.grad.tolist(), "only_main": only_main.grad.tolist(), "frozen": frozen.grad}
finally:
    dist.destroy_process_group()
with open(os.path.join(out_dir, f"rank{rank}.pkl"), "wb") as fh:
    pickle.dump({"gathered": gathered, "grads": grads, "module": distributed.__file__}, fh)
"""


def _rows(n: int) -> list:
    """The rows WORKER shards and gathers."""
    return [([i, 100 + i, 200 + i], i % 3 != 1) for i in range(n)]


def _start(world: int, tmp: Path) -> list[subprocess.Popen]:
    """Start WORKER as the `world` processes of one gloo group, writing their outputs to `tmp`."""
    tmp.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return [subprocess.Popen([sys.executable, "-c", WORKER, str(ROOT), str(rank), str(world), str(tmp / "rendezvous"),
                              str(tmp), ",".join(map(str, TOTALS))], env=env, stderr=subprocess.PIPE, text=True)
            for rank in range(world)]


@pytest.fixture(scope="module")
def gloo(tmp_path_factory) -> dict[int, list[dict]]:
    """Per world size (2 and 3, both groups at once), the outputs of WORKER by rank."""
    base = tmp_path_factory.mktemp("gloo")
    started = {world: _start(world, base / f"world{world}") for world in (2, 3)}
    procs = [p for group in started.values() for p in group]
    try:
        errors = [p.communicate(timeout=240)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(e[-2000:] for e in errors)
    return {world: [pickle.loads((base / f"world{world}" / f"rank{r}.pkl").read_bytes()) for r in range(world)]
            for world in started}


@pytest.mark.parametrize("world", [2, 3])
def test_gather_rows_puts_rank_strided_shards_back_in_sample_order_on_every_rank(gloo, world):
    for rank, out in enumerate(gloo[world]):
        assert Path(out["module"]) == ROOT / "methods" / "train" / "distributed.py"
        for n in TOTALS:
            assert out["gathered"][n] == _rows(n), (world, rank, n)


@pytest.mark.parametrize("world", [2, 3])
def test_mean_gradients_averages_over_the_ranks_and_counts_a_missing_gradient_as_zero(gloo, world):
    mean_factor = sum(range(1, world + 1)) / world   # ranks contribute 1x, 2x, ... the same vector
    for out in gloo[world]:
        assert out["grads"]["shared"] == pytest.approx([mean_factor, -mean_factor, 0.5 * mean_factor])
        assert out["grads"]["only_main"] == pytest.approx([6.0 / world, -3.0 / world])
        assert out["grads"]["frozen"] is None


# --- two processes under `accelerate launch` ------------------------------------------------------------------------

def _run(prefix: list[str], out: Path, env_extra: dict | None = None) -> dict[str, dict]:
    cmd = prefix + ["-m", "bench", "run", "--profile", "smoke", "--methods", ",".join(METHODS), "--shift", "temporal",
                    "--set", f"results_dir={out / 'results'}", "--set", f"cache_dir={out / 'cache'}"]
    for setting in SETTINGS:
        cmd += ["--set", setting]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **(env_extra or {})}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    files = sorted((out / "results").rglob("*.json"))
    return {p.name: json.loads(p.read_text()) for p in files}


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> tuple[dict[str, dict], dict[str, dict], Path]:
    """(single-process records, two-process records, the folder) of one smoke run of METHODS each way."""
    tmp = tmp_path_factory.mktemp("launched")
    single = _run([sys.executable], tmp / "single")
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    parallel = _run(launcher, tmp / "parallel", {"CUDA_VISIBLE_DEVICES": ""})
    return single, parallel, tmp


def _by_method(records: dict[str, dict]) -> dict[str, dict]:
    return {r["method"]: r for r in records.values()}


@pytest.mark.slow
def test_two_cpu_processes_write_the_single_process_record(launched):
    single, parallel, tmp = launched
    assert set(parallel) == set(single) and len(single) == len(METHODS)   # same keys, one file per method
    assert not list((tmp / "parallel" / "results").rglob("*.tmp*"))
    for name, one in single.items():
        two = parallel[name]
        assert two["environment"]["world_size"] == 2 and one["environment"]["world_size"] == 1
        assert two["split_fingerprint"] == one["split_fingerprint"] and two["key"] == one["key"]
        for part, res in one["results"].items():
            assert two["results"][part]["samples"] == res["samples"]   # every test sample scored once
            assert len(two["results"][part]["target_ranks"]) == res["samples"]
            assert two["results"][part]["metrics"]["valid_ratio"] == res["metrics"]["valid_ratio"]
            for metric, value in res["metrics"].items():
                assert abs(two["results"][part]["metrics"][metric] - value) <= 0.05, (name, metric)
        if one["method"] == "causaldpo":   # same global batch: the loss ends where the single process's ends
            assert abs(two["method_stats"]["final_loss"] - one["method_stats"]["final_loss"]) < 0.05
            assert two["method_stats"]["pairs"] == one["method_stats"]["pairs"]


@pytest.mark.slow
@pytest.mark.parametrize("method", DETERMINISTIC)
def test_a_deterministic_ranking_is_gathered_back_in_sample_order(launched, method):
    """Rows are ranked rank::2 and gathered: the per-sample target ranks equal the single process's exactly."""
    single, parallel, _ = launched
    one, two = _by_method(single)[method], _by_method(parallel)[method]
    for part, res in one["results"].items():
        ranks = res["target_ranks"]
        assert len(set(ranks)) >= 5 and sum(r < K for r in ranks) >= 5   # the ranks tell the samples apart
        assert two["results"][part]["target_ranks"] == ranks, (method, part)
        assert two["results"][part]["metrics"] == res["metrics"]


@pytest.mark.slow
def test_causaldpo_under_two_processes_has_multi_environment_steps_to_sync(launched):
    """The projection g only gets a gradient on a step with >= 2 pseudo-environments; some steps of the launched run
    have two, so `SyncRegularizerGradients` averaged a real gradient there. Every process clusters the whole step's
    16 rows (`methods.train.whole_step`), not its own 8."""
    single, parallel, _ = launched
    for records in (single, parallel):
        stats = _by_method(records)["causaldpo"]["method_stats"]
        assert stats["single_env_fraction"] < 1.0 and stats["mean_envs"] > 1.0, stats
        assert stats["clustered_per_step"] == 16.0
