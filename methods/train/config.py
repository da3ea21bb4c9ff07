"""Settings of the two training stages every LLM method shares: SFT and preference training (one dataclass each,
with help text; a profile sets them and ``--set sft.<field>=...`` / ``--set preference.<field>=...`` override them)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SFTConfig:
    epochs: float = field(default=3, metadata={"help": "SFT epochs over the training samples"})
    learning_rate: float = field(default=2e-3, metadata={"help": "peak learning rate (cosine schedule)"})
    batch_size: int = field(default=32, metadata={"help": "per-device batch size"})
    grad_accum: int = field(default=1, metadata={"help": "gradient accumulation steps"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "linear warm-up fraction"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    group_by_length: bool = field(default=False, metadata={
        "help": "batches of samples of similar length (seeded, every sample once per epoch), so little of a step is "
                "padding; off: a plain seeded shuffle"})
    save_steps: int = field(default=0, metadata={
        "help": "a resumable checkpoint (weights or adapter, optimizer, schedule, RNG, data position) every N "
                "optimizer steps under <cache_dir>/sft-checkpoints/; a run of the same SFT continues from the newest "
                "one. 0: none. Does not change the model, so not part of its identity"})
    checkpoint_dir: str | None = field(default=None, metadata={
        "help": "the folder of this run's checkpoints (None: <cache_dir>/sft-checkpoints/<run key>), e.g. a committed "
                "one to continue a run begun elsewhere; its run.json must name this run"})
    prebuilt_dir: str | None = field(default=None, metadata={
        "help": "a folder of finished SFT models named by their tag, as <cache_dir>/sft/ holds them (e.g. a "
                "leaderboard's committed ones): a cell whose model is there ranks and aligns from it, untrained"})
    keep_checkpoints: int = field(default=0, metadata={
        "help": "keep only the newest N checkpoints (0: all; a stop's model is copied to the SFT cache first)"})
    stop_after_samples: int | None = field(default=None, metadata={
        "help": "the SFT model is the training run's state after this many samples (rounded up to whole steps), "
                "its learning-rate schedule still spanning every epoch: a learning curve's points are stops of one "
                "run, each continuing from the checkpoint of the one before. None: the whole run"})


@dataclass
class PreferenceConfig:
    epochs: float = field(default=1, metadata={"help": "epochs over the preference pairs"})
    learning_rate: float = field(default=1e-4, metadata={"help": "peak learning rate (cosine schedule)"})
    batch_size: int = field(default=16, metadata={"help": "prompts per step; each brings 1 chosen + K rejected"})
    grad_accum: int = field(default=1, metadata={"help": "gradient accumulation steps"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "linear warm-up fraction"})
    max_pairs: int | None = field(default=None, metadata={"help": "cap on preference prompts (None: all)"})
    negatives: int = field(default=1, metadata={"help": "rejected responses per prompt (K)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping"})
