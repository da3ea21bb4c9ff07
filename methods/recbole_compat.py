"""Everything RecBole 1.2.1 needs to run on this stack (numpy 2, torch 2.13, pandas 2.3, setuptools<81), in one place.

Import RecBole only through `recbole()`, which applies the workarounds first. Each one below was checked to fail
without it (tests/methods/test_sasrec.py keeps a test per workaround):

- `recbole.quick_start` is never imported: it runs ``from ray import tune`` and ray 2.6.3 uses ``np.bool8``, removed
  in numpy 2. Ray only serves RecBole's hyper-parameter search; config, data, model and trainer import without it.
- `alias_numpy`: numpy 2 removed ``np.float_``, ``np.complex_``, ``np.unicode_``; RecBole's ``Config.__init__``
  reads them (to set ``np.float`` etc., which its metrics and dataset code use), so a bare ``Config(...)`` raises.
- `load_checkpoint`: torch >= 2.6 loads with ``weights_only=True``; RecBole's checkpoints pickle its ``Config``, so
  ``Trainer.evaluate(load_best_model=True)`` raises. We reload the best checkpoint ourselves with
  ``weights_only=False`` (our own file, written a moment earlier) and evaluate with ``load_best_model=False``.
- `no_tensorboard`: every RecBole ``Trainer`` opens a tensorboard ``SummaryWriter`` under ``./log_tensorboard`` of the
  current directory; we replace it with a writer that drops everything (not a version issue: no stray files).
- `restore_anomaly_detection`: importing ``recbole.model.sequential_recommender`` imports its SINE module, which
  calls ``torch.autograd.set_detect_anomaly(True)`` at import time, for the whole process: every backward pass
  afterwards (SASRec's and the LLM's) records stack traces, ~10x slower on CPU. The previous setting is restored.
- `isolated_config`: ``Config.__init__`` sets ``CUDA_VISIBLE_DEVICES = gpu_id`` for the whole process (default
  ``'0'``), hiding other GPUs from everything that initialises CUDA later, and reads every ``--key=value`` of
  ``sys.argv`` as a RecBole setting that overrides ours (``python -m bench run --seed=1`` would reach it). Inside
  the context the argv is hidden and the old CUDA_VISIBLE_DEVICES is restored on exit.
- `quiet`: RecBole logs through the root logger and trips pandas 2.3's FutureWarnings (chained in-place ``fillna``,
  ``Series.agg(len)``: harmless before pandas 3); both are silenced while it runs.
- pandas 3 breaks ``token_seq`` fields (``Series.agg(len)``, in-place ``fillna``) silently; the project pins
  ``pandas<3`` and `recbole()` refuses to run on pandas >= 3 rather than train on corrupted histories.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import types
import warnings

import numpy as np
import pandas as pd
import torch

NUMPY_ALIASES = {"float_": np.float64, "complex_": np.complex128, "unicode_": np.str_}


def alias_numpy() -> list[str]:
    """Re-add the numpy 1 names RecBole's Config reads (removed in numpy 2); returns the names added."""
    added = [name for name in NUMPY_ALIASES if name not in np.__dict__]
    for name in added:
        setattr(np, name, NUMPY_ALIASES[name])
    return added


class _NullWriter:
    """Stands in for tensorboard's SummaryWriter: every method accepts anything and does nothing."""

    def __getattr__(self, _name):
        return lambda *args, **kwargs: None


def no_tensorboard() -> None:
    """RecBole's Trainer writes tensorboard files under ./log_tensorboard; give it a writer that drops them."""
    import recbole.trainer.trainer as trainer_module

    trainer_module.get_tensorboard = lambda _logger: _NullWriter()


def check_pandas() -> None:
    """pandas 3 silently corrupts RecBole's token_seq fields (item histories): refuse rather than train on them."""
    if int(pd.__version__.split(".")[0]) >= 3:
        raise RuntimeError(f"RecBole 1.2.1 needs pandas<3 (found {pd.__version__}): token_seq fields break silently")


def load_checkpoint(path, device) -> dict:
    """RecBole's checkpoint (it pickles its Config), which torch >= 2.6's default weights_only=True refuses."""
    return torch.load(path, map_location=device, weights_only=False)


@contextlib.contextmanager
def restore_anomaly_detection():
    """RecBole's SINE module turns on autograd anomaly detection process-wide when imported; undo that."""
    was = torch.is_anomaly_enabled()
    try:
        yield
    finally:
        torch.autograd.set_detect_anomaly(was)


@contextlib.contextmanager
def isolated_config():
    """Build RecBole's Config here: it reads sys.argv and writes CUDA_VISIBLE_DEVICES process-wide; undo both."""
    old, argv = os.environ.get("CUDA_VISIBLE_DEVICES"), sys.argv
    sys.argv = argv[:1]
    try:
        yield
    finally:
        sys.argv = argv
        if old is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = old


@contextlib.contextmanager
def quiet(level: int = logging.WARNING):
    """RecBole logs INFO lines through the root logger and trips pandas FutureWarnings; silence both meanwhile."""
    root = logging.getLogger()
    old = root.level
    root.setLevel(max(level, old))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        root.setLevel(old)


_applied = False


def recbole() -> types.SimpleNamespace:
    """The RecBole pieces we use, imported after the workarounds (idempotent)."""
    global _applied
    if not _applied:
        check_pandas()
        alias_numpy()
    with restore_anomaly_detection():
        from recbole.config import Config
        from recbole.data import create_dataset, data_preparation
        from recbole.data.interaction import Interaction
        from recbole.model.sequential_recommender import SASRec
        from recbole.trainer import Trainer
        from recbole.utils import init_seed
    if not _applied:
        no_tensorboard()
        _applied = True

    return types.SimpleNamespace(Config=Config, create_dataset=create_dataset, data_preparation=data_preparation,
                                 Interaction=Interaction, SASRec=SASRec, Trainer=Trainer, init_seed=init_seed)
