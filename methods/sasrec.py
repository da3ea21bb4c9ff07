"""SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018, arXiv 1808.09781) through RecBole
1.2.1, trained on exactly the samples the LLM methods see, and scored on the full catalogue.

Model (RecBole's implementation): item + position embeddings of width d, L causal self-attention blocks; the last
position's output h_u scores every item by s(i|u) = h_u . e_i. Loss ``CE`` (RecBole's default for SASRec):
-log softmax_i s(i|u)[target] over all items; ``BPR`` uses one uniform negative. The item distribution used by D3's
text-free assistant (and RosePO's oracle) is P_S(i|u) = softmax_i s(i|u) (`TrainedSASRec.scores` gives s).

Data. The split is written as RecBole atomic files with ``benchmark_filename: [train, valid, test]``:
``<dir>/bench/bench.{train,valid,test}.inter`` with header ``user_id:token item_id_list:token_seq item_id:token``,
one row per (user, history, target) sample, so RecBole does no augmentation of its own:
- train = `ctx.train` (the same capped samples the SFT/preference stages see, with their users);
- valid: by default SASRec trains its `epochs` and keeps the last one, the benchmark's one selection rule for
  every trained method (the LLM methods keep their last epoch too; nothing is chosen on validation, nothing on
  test). With ``select_on_valid=true`` (SASRec's own protocol, not the benchmark's) the split's ``valid`` part,
  through `splits.samples.build_samples` (same history rule), at most `max_valid_samples` of them (seeded by the
  split seed), selects the best epoch (RecBole's early stopping on `valid_metric`, full-catalogue ranking).
  Without it (or with no valid samples) the first training sample stands in the valid and test files, which
  RecBole needs non-empty;
- test = the valid rows again inside `fit` (the harness scores the test parts itself, on our histories; the test
  parts never reach the method). `write_benchmark` takes real test samples for the RecBole cross-check.
Histories are cut to the most recent `max_history` items before writing (RecBole's MAX_ITEM_LIST_LENGTH would keep
the oldest); `max_history` defaults to the run's history length (the longest training history).

The catalogue is written as ``bench.item`` (one ``item_id:token`` column), so RecBole's item vocabulary is the
whole catalogue, not only the items of the three files: every catalogue item is scored (items absent from training
only ever act as CE negatives), and the vocabulary does not depend on which samples the three files hold.
A catalogue item RecBole does not know would get score -inf (``ctx.stats["sasrec_items_unscored"]``, 0 so far).

Choices where the papers are vague: d = 32, dropout 0.1 on hidden states and attention (the CausalDPO paper's
SASRec setting); 2 layers, 2 heads, inner size 4d, Adam lr 1e-3, batch 256, at most 30 epochs with patience 5 on
valid NDCG@10. History items unknown to RecBole are dropped from a scored history; a history left empty scores every
known item 0 (counted in ``ctx.stats["sasrec_empty_histories"]``). No item is excluded from the ranking (history items
included), like the LLM protocols; the record names the protocol ``full-sort`` whatever the run's
``ranking.protocol``. ``ctx.stats["seconds_per_epoch"]`` is the median training time of an epoch (validation
excluded).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from methods.base import Method, MethodContext, Paper, register
from methods.ranking import top_k
from methods.recbole_compat import isolated_config, load_checkpoint, quiet, recbole
from methods.declared_work import CellSize, Work
from splits.samples import Samples, build_samples

DATASET = "bench"  # the RecBole dataset name; no properties/dataset/<name>.yaml of RecBole's may match it
PARTS = ("train", "valid", "test")


@dataclass
class SASRecConfig:
    hidden_size: int = field(default=32, metadata={"help": "embedding / hidden width d (CausalDPO paper: 32)"})
    inner_size: int = field(default=128, metadata={"help": "feed-forward width of each block (4 d)"})
    n_layers: int = field(default=2, metadata={"help": "self-attention blocks"})
    n_heads: int = field(default=2, metadata={"help": "attention heads"})
    dropout: float = field(default=0.1, metadata={"help": "hidden and attention dropout (CausalDPO paper: 0.1)"})
    loss_type: str = field(default="CE", metadata={"help": "CE (softmax over all items) or BPR (1 negative)",
                                                   "choices": ("CE", "BPR")})
    epochs: int = field(default=30, metadata={"help": "training epochs (the maximum with select_on_valid)"})
    select_on_valid: bool = field(default=False, metadata={
        "help": "early-stop on valid_metric (RecBole's protocol); false: the last epoch, the benchmark's one rule "
                "for every trained method"})
    stopping_step: int = field(default=5, metadata={"help": "early-stopping patience in epochs on valid_metric"})
    valid_metric: str = field(default="NDCG@10", metadata={"help": "RecBole metric selecting the best epoch",
                                                           "choices": ("Hit@10", "Hit@20", "NDCG@10", "NDCG@20")})
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    batch_size: int = field(default=256, metadata={"help": "training batch size"})
    eval_batch_size: int = field(default=1024, metadata={"help": "histories per scoring batch"})
    max_history: int | None = field(default=None, metadata={
        "help": "most recent history items fed to SASRec (None: the run's history length)"})
    max_valid_samples: int | None = field(default=2000, metadata={
        "help": "cap on validation samples for epoch selection (None: all)"})


# --- atomic files -----------------------------------------------------------------------------------------------------

def write_benchmark(directory: Path, parts: dict[str, Samples], history_len: int, catalogue_items) -> Path:
    """Write `parts` (train, valid, test) as RecBole benchmark files and the catalogue as ``bench.item`` under
    ``directory/bench``; returns that folder."""
    folder = Path(directory) / DATASET
    folder.mkdir(parents=True, exist_ok=True)
    items = "\n".join(str(int(i)) for i in catalogue_items)
    (folder / f"{DATASET}.item").write_text(f"item_id:token\n{items}\n")
    for part in PARTS:
        s = parts[part]
        lines = ["user_id:token\titem_id_list:token_seq\titem_id:token"]
        for user, history, target in zip(s.users, s.histories, s.targets):
            recent = " ".join(str(int(i)) for i in np.asarray(history)[-history_len:])
            lines.append(f"{int(user)}\t{recent}\t{int(target)}")
        (folder / f"{DATASET}.{part}.inter").write_text("\n".join(lines) + "\n")
    return folder


def recbole_config(directory: Path, cfg: SASRecConfig, history_len: int, seed: int, device):
    rb = recbole()
    options = {
        "data_path": str(directory), "benchmark_filename": list(PARTS),
        "checkpoint_dir": str(Path(directory) / "saved"), "alias_of_item_id": ["item_id_list"],
        "load_col": {"inter": ["user_id", "item_id_list", "item_id"], "item": ["item_id"]},
        "MAX_ITEM_LIST_LENGTH": history_len, "seed": seed, "reproducibility": True, "state": "WARNING",
        "show_progress": False, "log_wandb": False, "use_gpu": False, "gpu_id": "", "worker": 0,
        "hidden_size": cfg.hidden_size, "inner_size": cfg.inner_size, "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads, "hidden_dropout_prob": cfg.dropout, "attn_dropout_prob": cfg.dropout,
        "loss_type": cfg.loss_type, "epochs": cfg.epochs, "stopping_step": cfg.stopping_step,
        "learning_rate": cfg.learning_rate, "train_batch_size": cfg.batch_size, "eval_batch_size": cfg.eval_batch_size,
        "train_neg_sample_args": None if cfg.loss_type == "CE" else {"distribution": "uniform", "sample_num": 1},
        "eval_args": {"group_by": "user", "order": "TO", "split": {"RS": [0.8, 0.1, 0.1]}, "mode": "full"},
        "metrics": ["Hit", "NDCG"], "topk": [10, 20], "valid_metric": cfg.valid_metric,
    }
    with isolated_config():
        config = rb.Config(model="SASRec", dataset=DATASET, config_dict=options)
    config["device"] = torch.device(device)
    return config


# --- training and scoring ---------------------------------------------------------------------------------------------

@dataclass
class TrainedSASRec:
    """A trained RecBole SASRec and the map from its item ids to catalogue positions."""

    model: torch.nn.Module
    token_of: dict[int, int]  # our item id -> RecBole's internal item id
    internal_position: np.ndarray  # RecBole internal item id -> catalogue position (-1: not in the catalogue / pad)
    n_items: int  # catalogue size
    history_len: int
    batch_size: int
    stats: dict

    def scores(self, histories: list[np.ndarray]) -> np.ndarray:
        """(n, n_items) float32 logits s(i|u) in catalogue order; -inf for items RecBole does not know."""
        model, device = self.model, next(self.model.parameters()).device
        model.eval()
        out = np.full((len(histories), self.n_items), -np.inf, dtype=np.float32)
        known = self.internal_position >= 0
        cols, positions = np.flatnonzero(known), self.internal_position[known]
        empty = 0
        with torch.inference_mode():
            for start in range(0, len(histories), self.batch_size):
                chunk = histories[start: start + self.batch_size]
                seqs = [[self.token_of[int(i)] for i in h if int(i) in self.token_of][-self.history_len:]
                        for h in chunk]
                lengths = torch.tensor([max(len(s), 1) for s in seqs])
                ids = torch.zeros(len(seqs), self.history_len, dtype=torch.long)
                for r, s in enumerate(seqs):
                    ids[r, : len(s)] = torch.tensor(s, dtype=torch.long)
                logits = model.full_sort_predict({model.ITEM_SEQ: ids.to(device),
                                                  model.ITEM_SEQ_LEN: lengths.to(device)}).float().cpu().numpy()
                block = out[start: start + len(chunk)]
                block[:, positions] = logits[:, cols]
                for r, s in enumerate(seqs):
                    if not s:
                        block[r, positions] = 0.0
                        empty += 1
        self.stats["sasrec_empty_histories"] = self.stats.get("sasrec_empty_histories", 0) + empty
        return out


def train_sasrec(parts: dict[str, Samples], catalogue_items: np.ndarray, cfg: SASRecConfig, directory: Path,
                 history_len: int, seed: int, device, log=print, use_valid: bool = True):
    """Write `parts`, train SASRec with RecBole (best epoch on valid), return (TrainedSASRec, RecBole handles).

    With `use_valid` False the valid file is not used (the last epoch is kept). The handles (config, dataset,
    loaders, trainer) serve the RecBole cross-check; callers may drop them.
    """
    rb = recbole()
    directory = Path(directory)
    write_benchmark(directory, parts, history_len, catalogue_items)
    with quiet():
        config = recbole_config(directory, cfg, history_len, seed, device)
        rb.init_seed(seed, True)
        dataset = rb.create_dataset(config)
        train_data, valid_data, test_data = rb.data_preparation(config, dataset)
        rb.init_seed(seed, True)
        model = rb.SASRec(config, train_data.dataset).to(config["device"])

        epoch_seconds: list[float] = []

        class TimedTrainer(rb.Trainer):
            def _train_epoch(self, *args, **kwargs):
                start = time.perf_counter()
                loss = super()._train_epoch(*args, **kwargs)
                epoch_seconds.append(time.perf_counter() - start)
                return loss

        trainer = TimedTrainer(config, model)
        best_score, _ = trainer.fit(train_data, valid_data if use_valid else None, verbose=False, saved=True)
        model.load_state_dict(load_checkpoint(trainer.saved_model_file, config["device"])["state_dict"])
    tokens = dataset.field2id_token["item_id"]
    position = {int(item): p for p, item in enumerate(catalogue_items)}
    internal_position = np.array([position.get(int(t), -1) if t != "[PAD]" else -1 for t in tokens], dtype=np.int64)
    token_of = {int(t): j for j, t in enumerate(tokens) if t != "[PAD]"}
    train = parts["train"]
    trained_items = set(np.asarray(train.targets).tolist()).union(*(np.asarray(h).tolist() for h in train.histories))
    stats = {"seconds_per_epoch": statistics.median(epoch_seconds), "sasrec_epochs": len(epoch_seconds),
             "sasrec_loss_type": config["loss_type"], "sasrec_best_valid": float(best_score) if use_valid else None,
             "sasrec_valid_metric": cfg.valid_metric if use_valid else None,
             "sasrec_train_samples": len(parts["train"]),
             "sasrec_valid_samples": len(parts["valid"]) if use_valid else 0,
             "sasrec_history_len": history_len, "sasrec_items_in_training": len(trained_items),
             "sasrec_items_unscored": int(len(catalogue_items) - (internal_position >= 0).sum())}
    log(f"sasrec: {len(epoch_seconds)} epochs, {stats['seconds_per_epoch']:.1f} s/epoch, "
        f"loss {config['loss_type']}, best valid {cfg.valid_metric} {best_score if use_valid else 'n/a'}")
    trained = TrainedSASRec(model=model, token_of=token_of, internal_position=internal_position,
                            n_items=len(catalogue_items), history_len=history_len, batch_size=cfg.eval_batch_size,
                            stats=stats)
    handles = {"config": config, "dataset": dataset, "train": train_data, "valid": valid_data, "test": test_data,
               "trainer": trainer}
    return trained, handles


def training_samples(ctx: MethodContext) -> Samples:
    """`ctx.train` as `Samples` (RecBole's files name each sample's user)."""
    return Samples("train", np.asarray(ctx.train.users, np.int64), np.asarray(ctx.train.targets, np.int64),
                   list(ctx.train.histories))


def fit_sasrec(ctx: MethodContext, cfg: SASRecConfig, subdir: str = "sasrec") -> TrainedSASRec:
    """Train SASRec on the context's samples (see the module docstring); its stats are copied into `ctx.stats`."""
    run_history = max(len(h) for h in ctx.train.histories)  # the run's history length (ctx.train is cut to it)
    train = training_samples(ctx)
    valid = build_samples(ctx.split, "valid", run_history, cfg.max_valid_samples, ctx.split.seed)
    use_valid = cfg.select_on_valid and len(valid) > 0
    placeholder = valid if use_valid else train.subset(np.arange(1))  # RecBole wants three non-empty files
    parts = {"train": train, "valid": placeholder, "test": placeholder}
    trained, _ = train_sasrec(parts, ctx.items, cfg, Path(ctx.output_dir) / subdir, cfg.max_history or run_history,
                              ctx.seed, ctx.device, ctx.log, use_valid=use_valid)
    ctx.stats.update(trained.stats)
    trained.stats = ctx.stats  # later scoring adds its counts to the run's record
    return trained


class SASRecRecommender:
    def __init__(self, trained: TrainedSASRec):
        self.trained = trained

    def rank(self, prompts, histories, k, exclude=None):
        return top_k(self.trained.scores(list(histories)), k, exclude), np.ones(len(histories), dtype=bool)


@register
class SASRecMethod(Method):
    name = "sasrec"
    fit_cacheable = False  # RecBole's model and its own recommender
    paper = Paper("Self-Attentive Sequential Recommendation", "1808.09781", note="RecBole 1.2.1 implementation")
    Config = SASRecConfig
    uses_sft = False

    def fit(self, ctx: MethodContext):
        trained = fit_sasrec(ctx, self.config)
        ctx.stats["protocol"] = "full-sort"  # every catalogue item by SASRec's logits, whatever the run's protocol
        return SASRecRecommender(trained)

    def workload(self, size: CellSize) -> list[Work]:
        return sasrec_workload(self.config, size)

    def ranking_key(self, ranking) -> str:
        return "sasrec"


def sasrec_workload(cfg: SASRecConfig, size: CellSize) -> list[Work]:
    """Its `epochs` over the training samples (the maximum when selecting on validation: early stopping may end
    sooner)."""
    return [Work("sasrec", "sasrec_epoch", cfg.epochs, sequences=size.train_samples * cfg.epochs)]
