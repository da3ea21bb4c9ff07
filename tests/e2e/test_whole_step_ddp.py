"""CausalDPO's regularizer under data parallelism, with real gloo process groups on the CPU: 2 and 4 processes with
gradient accumulation (4 and 2 rows per process and micro-batch, the paper profile's 2 included) against one
process holding each optimizer step's 32 pairs at once, same pairs, seed and initial weights. The step's rows are
gathered from every process and micro-batch (`methods.train.whole_step`), so the first step clusters the same pairs
into the same environments with the same MMD, the synchronised gradients equal the single process's, and over a short
run the share of single-environment steps stays where one process puts it (per micro-batch and process it was 1.0).

The workers run the real `PreferenceTrainer` (transformers Trainer + accelerate's DDP over gloo); they import the
`methods` modules they need without the package __init__ files (~10 s of imports saved per process)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEP, STEPS = 32, 4            # pairs per optimizer step, optimizer steps per run

WORKER = r"""
import json, os, sys, types
from datetime import timedelta

root, rank, world, init_file, out, batch, accum, n = sys.argv[1:9]
rank, world, batch, accum, n = int(rank), int(world), int(batch), int(accum), int(n)
os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                  MASTER_ADDR="127.0.0.1", MASTER_PORT="1")   # the group below is already initialised (file://)
for name in ("methods", "methods.train"):
    package = types.ModuleType(name)
    package.__path__ = [os.path.join(root, *name.split("."))]
    sys.modules[name] = package
import numpy as np
import torch
import torch.distributed as dist
from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback

if world > 1:
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=world,
                            timeout=timedelta(seconds=120))
from methods.causal import CausalConfig, CausalRegularizer
from methods.losses import dpo_loss, mean_reduce
from methods.train import preference_trainer as trainer_module
from methods.train.config import PreferenceConfig
from methods.train.preference_trainer import PreferencePairs, reference_logps

torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     num_key_value_heads=2, intermediate_size=32, max_position_embeddings=128,
                                     pad_token_id=0))
rng = np.random.default_rng(3)
rand = lambda lo, hi: rng.integers(3, 40, size=int(rng.integers(lo, hi))).tolist()
pairs = PreferencePairs(prompts=[rand(3, 9) for _ in range(n)], chosen=[rand(1, 4) + [2] for _ in range(n)],
                        rejected=[[rand(1, 4) + [2]] for _ in range(n)])
ref = reference_logps(model, pairs, 0, "cpu")
torch.manual_seed(0)
regularizer = CausalRegularizer(16, CausalConfig(projection_dim=4, min_samples=2, mmd_target="hidden"))

class FirstStepGradients(TrainerCallback):
    grads = None
    def on_pre_optimizer_step(self, args, state, control, **kwargs):   # after DDP's and g's averaging
        if self.grads is None:
            named = list(model.named_parameters()) + [("g." + k, p) for k, p in regularizer.named_parameters()]
            self.grads = {k: p.grad.flatten().tolist() for k, p in named if p.grad is not None}

capture = FirstStepGradients()
original = trainer_module.PreferenceTrainer.__init__
def with_capture(self, *args, callbacks=None, **kwargs):
    original(self, *args, callbacks=(callbacks or []) + [capture], **kwargs)
trainer_module.PreferenceTrainer.__init__ = with_capture
cfg = PreferenceConfig(epochs=1, learning_rate=5e-3, batch_size=batch, grad_accum=accum, warmup_ratio=0.0,
                       max_grad_norm=1e9)
_, _, history = trainer_module.train_preference(model, pairs, ref, lambda p, r: dpo_loss(p, r, 0.5), mean_reduce,
                                                0.5, cfg, 0, "cpu", 0, regularizer)
envs = history["causal/envs"][::accum]            # one entry per optimizer step (micro-batches repeat the step's)
result = {"first_step": history["causal/first_step"][0], "grads": capture.grads, "envs": envs,
          "clustered": history["causal/clustered"], "world": int(os.environ["WORLD_SIZE"])}
with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
    json.dump(result, fh)
if world > 1:
    dist.destroy_process_group()
"""


def launch(world: int, batch: int, accum: int, folder: Path) -> list[dict]:
    """Run WORKER as `world` processes of one gloo group; their outputs by rank."""
    folder.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(ROOT), str(rank), str(world),
                               str(folder / "rendezvous"), str(folder), str(batch), str(accum), str(STEP * STEPS)],
                              env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
             for rank in range(world)]
    try:
        errors = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(e[-3000:] for e in errors)
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(world)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[int, list[dict]]:
    """world -> per-rank outputs: 1 process x 32 rows, 2 processes x 4 rows x 4 micro-batches, 4 x 2 x 4."""
    base = tmp_path_factory.mktemp("whole_step")
    settings = {1: (STEP, 1), 2: (STEP // 4, 4), 4: (STEP // 4, 4)}   # global micro-batch, accumulation
    return {world: launch(world, batch, accum, base / f"world{world}") for world, (batch, accum) in settings.items()}


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 4])
def test_every_process_clusters_the_whole_step_like_one_process(runs, world):
    one = runs[1][0]
    assert one["world"] == 1 and one["first_step"]["envs"] >= 2 and one["first_step"]["mmd2"] > 0
    for out in runs[world]:
        assert out["world"] == world
        assert out["clustered"] == [float(STEP)] * len(out["clustered"])       # 32 rows per DBSCAN call, not 4 or 2
        first = out["first_step"]
        assert first["indices"] == one["first_step"]["indices"]                 # the same pairs, in the same order
        assert first["labels"] == one["first_step"]["labels"]
        assert first["mmd2"] == pytest.approx(one["first_step"]["mmd2"], rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 4])
def test_the_synchronised_first_step_gradient_is_the_single_process_gradient(runs, world):
    one = runs[1][0]["grads"]
    assert any(name.startswith("g.") for name in one)                          # g has a gradient to compare
    for out in runs[world]:
        assert set(out["grads"]) == set(one)
        for name, grad in one.items():
            assert out["grads"][name] == pytest.approx(grad, rel=1e-3, abs=1e-6), name


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 4])
def test_single_environment_steps_stay_at_the_single_process_share(runs, world):
    """The record's `single_env_fraction` over the run: one process's share, within one step of the four (the
    processes' weights drift from the single process's by float noise after the first step)."""
    single = lambda envs: sum(e < 2 for e in envs) / len(envs)                  # noqa: E731
    one = single(runs[1][0]["envs"])
    assert len(runs[1][0]["envs"]) == STEPS and one < 1.0
    for out in runs[world]:
        assert abs(single(out["envs"]) - one) <= 1 / STEPS
