"""SASRec through RecBole: the atomic files RecBole reads hold exactly our samples, its item vocabulary is the
catalogue, a short training run ranks the catalogue, our scores equal RecBole's own for the same rows (columns matched
through RecBole's vocabulary), and each RecBole compatibility workaround is needed."""
from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import types
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from methods import recbole_compat
from methods.base import TrainingSamples
from methods.sasrec import SASRecConfig, SASRecMethod, recbole_config, train_sasrec
from splits import Split, build_split, load_dataset
from splits.samples import build_samples

HISTORY = 4


@pytest.fixture(scope="module")
def cell():
    dataset = load_dataset("ml-100k")
    split = build_split(dataset, "temporal", 0)
    parts = {"train": build_samples(split, "train", 12, 300, 0), "valid": build_samples(split, "valid", 12, 40, 0),
             "test": build_samples(split, "ood_test", 12, 40, 0)}
    return types.SimpleNamespace(split=split, items=np.asarray(dataset.items, np.int64), parts=parts)


@pytest.fixture(scope="module")
def trained(cell, tmp_path_factory):
    cfg = SASRecConfig(epochs=1, batch_size=64)
    return train_sasrec(cell.parts, cell.items, cfg, tmp_path_factory.mktemp("sasrec"), HISTORY, 0, "cpu",
                        log=lambda _: None)


def test_recbole_reads_exactly_our_samples(cell, trained):
    _, handles = trained
    for part, loader in zip(("train", "valid", "test"), (handles["train"], handles["valid"], handles["test"])):
        ours, data = cell.parts[part], loader.dataset
        inter = data.inter_feat
        assert len(inter) == len(ours), part
        users = data.id2token("user_id", inter["user_id"].numpy())
        targets = data.id2token("item_id", inter["item_id"].numpy())
        assert users.astype(np.int64).tolist() == ours.users.tolist(), part
        assert targets.astype(np.int64).tolist() == ours.targets.tolist(), part
        lists, lengths = inter["item_id_list"].numpy(), inter["item_length"].numpy()
        assert any(len(h) > HISTORY for h in ours.histories)  # the cut is exercised
        for row, (history, length) in enumerate(zip(ours.histories, lengths)):
            got = data.id2token("item_id", lists[row, :length]).astype(np.int64).tolist()
            assert got == history[-HISTORY:].tolist(), (part, row)  # the most recent, oldest first
            assert (lists[row, length:] == 0).all()


def test_training_smoke_ranks_the_catalogue_and_matches_recbole_scores(cell, trained):
    model, handles = trained
    assert model.stats["sasrec_loss_type"] == "CE" and model.stats["seconds_per_epoch"] > 0
    assert model.stats["sasrec_items_unscored"] == 0 and model.stats["sasrec_items_in_training"] < len(cell.items)
    test = cell.parts["test"]
    ours = model.scores(test.histories)
    assert ours.shape == (len(test), len(cell.items)) and np.isfinite(ours).all()
    # RecBole's own full-sort scores on its loaded test rows (columns: RecBole's internal item ids), put in catalogue
    # order through RecBole's vocabulary (catalogue item ids are written as tokens), not through our mapping
    data = handles["test"].dataset
    field = data.iid_field
    tokens = [str(int(i)) for i in cell.items]
    columns = data.token2id(field, tokens)              # catalogue position -> RecBole internal id
    assert data.id2token(field, columns).tolist() == tokens
    with torch.inference_mode():
        theirs = model.model.full_sort_predict(data.inter_feat).numpy()
    assert theirs.shape == (len(test), len(cell.items) + 1)  # + RecBole's padding id 0
    np.testing.assert_allclose(ours, theirs[:, columns], rtol=1e-5, atol=1e-5)
    assert np.ptp(ours, axis=1).min() > 1e-2                 # scores differ across items: a wrong column order shows
    # an unseen history item is dropped; an empty history scores every known item 0
    out = model.scores([np.array([10 ** 9]), test.histories[0]])
    assert (out[0] == 0).all()
    np.testing.assert_allclose(out[1], ours[0], rtol=1e-5, atol=1e-5)  # a 2-row batch: equal up to float rounding


def test_recbole_item_vocabulary_is_the_written_catalogue(cell, trained):
    """bench.item makes RecBole's item vocabulary exactly the catalogue: its padding token plus one token per item."""
    _, handles = trained
    for data in (handles["dataset"], handles["test"].dataset):
        vocabulary = data.field2id_token[data.iid_field]
        assert vocabulary[0] == "[PAD]" and len(vocabulary) == len(cell.items) + 1
        assert set(vocabulary[1:].tolist()) == {str(int(i)) for i in cell.items}


@pytest.mark.parametrize("no_valid", [False, True])
def test_method_fit_on_a_context(cell, tmp_path, no_valid):
    split = cell.split
    if no_valid:  # no validation samples: the last epoch is kept; a shorter SASRec history than the run's
        split = Split(split.dataset, split.shift, split.seed, {**split.parts, "valid": split["valid"].iloc[:0]},
                      split.fingerprint)
    samples = build_samples(split, "train", HISTORY, 200, split.seed)
    ctx = types.SimpleNamespace(split=split, items=cell.items, seed=0, device=torch.device("cpu"),
                                output_dir=tmp_path, log=lambda _: None, stats={},
                                train=TrainingSamples([[1]] * len(samples), samples.targets, samples.histories,
                                                      samples.users, samples.timestamps))
    history = HISTORY - 2 if no_valid else None
    assert SASRecConfig().select_on_valid is False      # the benchmark's rule: the last epoch, as every method
    recommender = SASRecMethod(SASRecConfig(epochs=1, max_valid_samples=30, max_history=history,
                                            select_on_valid=True)).fit(ctx)
    topk, valid = recommender.rank([[1]] * 5, cell.parts["test"].histories[:5], 10)
    assert topk.shape == (5, 10) and valid.all()
    assert ((topk >= 0) & (topk < len(cell.items))).all() and all(len(set(r)) == 10 for r in topk.tolist())
    assert ctx.stats["sasrec_train_samples"] == 200 and ctx.stats["sasrec_history_len"] == (history or HISTORY)
    assert ctx.stats["sasrec_loss_type"] == "CE" and ctx.stats["seconds_per_epoch"] > 0
    assert ctx.stats["protocol"] == "full-sort"
    assert (ctx.stats["sasrec_valid_samples"] == 0) == no_valid == (ctx.stats["sasrec_best_valid"] is None)
    written = (tmp_path / "sasrec" / "bench" / "bench.train.inter").read_text().splitlines()
    assert written[0] == "user_id:token\titem_id_list:token_seq\titem_id:token" and len(written) == 201
    for line, user, target, hist in zip(written[1:], samples.users, samples.targets, samples.histories):
        assert line == f"{user}\t{' '.join(map(str, hist[-(history or HISTORY):]))}\t{target}"


# --- one test per compatibility workaround ----------------------------------------------------------------------------

def test_quick_start_is_not_imported():
    """`recbole.quick_start` imports ray, which breaks on numpy 2; our path never imports it."""
    failed = subprocess.run([sys.executable, "-c", "import recbole.quick_start"], capture_output=True, text=True)
    if failed.returncode == 0:
        pytest.skip("recbole.quick_start imports on this stack; the workaround is no longer needed")
    assert "bool8" in failed.stderr or "pkg_resources" in failed.stderr
    code = ("import sys; from methods.recbole_compat import recbole; recbole(); "
            "assert 'recbole.quick_start' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_anomaly_detection_stays_off():
    """Importing RecBole's sequential models turns autograd anomaly detection on (SINE); recbole() undoes it."""
    code = "import torch, recbole.model.sequential_recommender; print(torch.is_anomaly_enabled())"
    bare = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True)
    assert bare.stdout.split()[-1] == "True"
    code = "import torch; from methods.recbole_compat import recbole; recbole(); print(torch.is_anomaly_enabled())"
    ours = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True)
    assert ours.stdout.split()[-1] == "False" and not torch.is_anomaly_enabled()


@pytest.mark.parametrize("name", sorted(recbole_compat.NUMPY_ALIASES))
def test_numpy_alias_is_needed_by_recbole_config(name, monkeypatch):
    recbole_compat.recbole()
    from recbole.config import Config

    monkeypatch.delattr(np, name)
    if hasattr(np, name):
        pytest.skip(f"numpy still has np.{name}")
    with pytest.raises(AttributeError):
        Config.compatibility_settings(None)
    assert recbole_compat.alias_numpy() == [name]
    Config.compatibility_settings(None)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_checkpoint_reload_needs_weights_only_false(trained):
    _, handles = trained
    trainer = handles["trainer"]
    with pytest.raises(pickle.UnpicklingError):
        trainer.evaluate(handles["test"], load_best_model=True)
    state = recbole_compat.load_checkpoint(trainer.saved_model_file, "cpu")["state_dict"]
    assert set(state) == set(trainer.model.state_dict())


def test_no_tensorboard_files(trained, tmp_path, monkeypatch):
    from recbole.utils.utils import get_tensorboard

    monkeypatch.chdir(tmp_path)
    get_tensorboard(logging.getLogger())  # RecBole's own: a directory in the cwd
    assert (tmp_path / "log_tensorboard").exists()
    (tmp_path / "log_tensorboard").rename(tmp_path / "was_there")
    model, handles = trained
    recbole_compat.recbole().Trainer(handles["config"], model.model)
    assert not (tmp_path / "log_tensorboard").exists()


def test_config_is_isolated_from_argv_and_keeps_cuda_visible_devices(tmp_path, monkeypatch):
    rb = recbole_compat.recbole()
    (tmp_path / "bench").mkdir()
    options = {"data_path": str(tmp_path), "gpu_id": "0", "train_neg_sample_args": None, "seed": 7}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setattr(sys, "argv", ["bench", "run", "--seed=3"])
    config = rb.Config(model="SASRec", dataset="bench", config_dict=options)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0" and config["seed"] == 3  # RecBole's side effects
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with recbole_compat.isolated_config():
        config = rb.Config(model="SASRec", dataset="bench", config_dict=options)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1" and config["seed"] == 7
    assert sys.argv == ["bench", "run", "--seed=3"]
    config = recbole_config(tmp_path, SASRecConfig(), HISTORY, 5, "cpu")
    assert config["seed"] == 5 and config["device"] == torch.device("cpu")


def test_pandas_3_is_refused(monkeypatch):
    recbole_compat.check_pandas()  # the pinned pandas passes
    monkeypatch.setattr(pd, "__version__", "3.0.0")
    with pytest.raises(RuntimeError, match="pandas<3"):
        recbole_compat.check_pandas()


def test_quiet_silences_recbole_info_and_future_warnings(caplog):
    with caplog.at_level(logging.INFO), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with recbole_compat.quiet():
            logging.getLogger().info("inside")
            warnings.warn("inside", FutureWarning)
        logging.getLogger().info("after")
    assert "inside" not in caplog.text and "after" in caplog.text and not caught
