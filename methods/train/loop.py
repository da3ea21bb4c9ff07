"""What SFT and preference training share: their `TrainingArguments` and the per-epoch timer."""
from __future__ import annotations

import statistics
import time

import torch
from transformers import TrainerCallback

from methods.train import distributed


class EpochTimer(TrainerCallback):
    """Wall seconds of each epoch (the paper's Tables 6-7 report seconds per epoch)."""

    def __init__(self):
        self.durations: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.durations.append(time.perf_counter() - self._start)

    def seconds_per_epoch(self, epochs: float) -> float:
        if not self.durations:
            return float("nan")
        if epochs < 1:  # a partial epoch: scale to a whole one
            return self.durations[0] / epochs
        return statistics.median(self.durations)



def training_arguments(output_dir: str, epochs: float, batch_size: int, grad_accum: int, learning_rate: float,
                       warmup: float, seed: int, device, max_grad_norm: float = 1.0, dtype: str = "float32",
                       weight_decay: float = 0.0) -> dict:
    """TrainingArguments shared by SFT and preference training (CPU-safe values set explicitly)."""
    on_cuda = torch.device(device).type == "cuda"
    return dict(output_dir=output_dir, num_train_epochs=epochs, per_device_train_batch_size=distributed.per_device(batch_size),
                gradient_accumulation_steps=grad_accum, learning_rate=learning_rate, lr_scheduler_type="cosine",
                warmup_steps=warmup, weight_decay=weight_decay, max_grad_norm=max_grad_norm, seed=seed,
                data_seed=seed, report_to="none", save_strategy="no", logging_steps=50,
                use_cpu=not on_cuda, bf16=on_cuda and dtype == "bfloat16", remove_unused_columns=False,
                dataloader_num_workers=0, disable_tqdm=False)
