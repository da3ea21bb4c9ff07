"""Resumable SFT: checkpoints of one training run, and models taken from it part-way (a learning curve's points).

An SFT run longer than a working session writes a checkpoint every `save_steps` optimizer steps into its own
folder (`checkpoint-<step>`, the Trainer's layout: weights or LoRA adapter, optimizer, schedule, RNG states, and
`trainer_state.json`, which the Trainer writes last, so a folder without it was cut off and is ignored). A later
run of the same training run (same data, settings, seed: the caller names the folder by them) continues from the
newest complete checkpoint: the Trainer skips the batches already seen (the samplers are seeded per epoch) and
restores the RNG, so on the same machine and thread count the resumed run reaches the uninterrupted run's weights.

`stop_step` ends a run early at an optimizer step, with a checkpoint there: the model after N samples of the
run whose learning-rate schedule spans all its epochs. The points of a learning curve are such stops of one run,
and each later point continues from the one before instead of training again from the start.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback

TIMING = "sft_timing.json"   # beside trainer_state.json: the run's cumulative training seconds at the checkpoint


def complete_checkpoints(folder: Path) -> dict[int, Path]:
    """{optimizer step: folder} of the complete checkpoints in `folder` (see the module docstring)."""
    found = {}
    for path in Path(folder).glob("checkpoint-*") if Path(folder).is_dir() else []:
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if not match:
            continue
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        found[int(match.group(1))] = path
    return found


def resume_point(folder: Path, stop_step: int | None) -> Path | None:
    """The newest complete checkpoint at or before `stop_step` (any, when None), or None."""
    found = complete_checkpoints(folder)
    steps = [s for s in found if stop_step is None or s <= stop_step]
    return found[max(steps)] if steps else None


def checkpoint_timing(checkpoint: Path | None) -> dict:
    """What `StopAndTime` kept in `checkpoint`: the run's training seconds so far (`train_seconds`) and the seconds
    per epoch of the session that wrote it; zero and NaN when unknown (no checkpoint, or a foreign one)."""
    try:
        timing = json.loads((Path(checkpoint) / TIMING).read_text())
        return {"train_seconds": float(timing["train_seconds"]),
                "seconds_per_epoch": float(timing["seconds_per_epoch"])}
    except (OSError, ValueError, KeyError, TypeError):
        return {"train_seconds": 0.0, "seconds_per_epoch": float("nan")}


def claim_folder(folder: Path, run_key: str | None) -> None:
    """Mark `folder` as the checkpoints of training run `run_key` (its run.json), or refuse it when run.json names
    another run: continuing another run's optimizer and weights would silently train a different model."""
    if run_key is None:
        return
    marker = Path(folder) / "run.json"
    if marker.exists():
        try:
            named = json.loads(marker.read_text()).get("run")
        except (OSError, ValueError, AttributeError) as err:
            raise ValueError(f"{marker}: unreadable ({err}); remove it or choose another sft.checkpoint_dir") from err
        if named != run_key:
            raise ValueError(f"{marker}: the checkpoints of SFT run {named}, not of this run ({run_key}): its data, "
                             f"settings or seed differ; choose another sft.checkpoint_dir")
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"run": run_key}) + "\n")


def copy_weights(checkpoint: Path, target: Path) -> None:
    """The model files of `checkpoint` (config or adapter config, safetensors) into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    for path in checkpoint.iterdir():
        if path.suffix == ".safetensors" or path.name in ("config.json", "adapter_config.json",
                                                           "generation_config.json"):
            shutil.copy2(path, target / path.name)


class StopAndTime(TrainerCallback):
    """Stops training after optimizer step `stop_step` (None: never) with a checkpoint there, and keeps the run's
    cumulative training seconds (`done_before` from an earlier session, plus this one's) in every checkpoint."""

    def __init__(self, stop_step: int | None, done_before: float = 0.0):
        self.stop_step, self.done_before = stop_step, done_before
        self.start = time.perf_counter()
        self.first_step: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.first_step = time.perf_counter(), state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop_step is not None and state.global_step >= self.stop_step:
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            (folder / TIMING).write_text(json.dumps({"train_seconds": self.total_seconds(), "step": state.global_step,
                                                     "seconds_per_epoch": self.seconds_per_epoch(state, args)}))

    def seconds_per_epoch(self, state, args) -> float:
        """This session's seconds per optimizer step times the run's steps per epoch."""
        steps = state.global_step - (self.first_step or 0)
        return self.session_seconds() / max(steps, 1) * state.max_steps / max(args.num_train_epochs, 1e-9)

    def session_seconds(self) -> float:
        return time.perf_counter() - self.start

    def total_seconds(self) -> float:
        return self.done_before + self.session_seconds()
