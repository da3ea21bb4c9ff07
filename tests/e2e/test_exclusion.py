"""`ranking.exclude_seen` end to end on the smoke profile: on by default and recorded, every ranked list of the
harness leaves out the user's training-part items (never a valid or test item), and `false` restores the old
reading (MostPop then recommends consumed items)."""
from __future__ import annotations

import numpy as np

import methods
from bench.config import apply_overrides, load_profile
from bench.pipeline import PreparedCell, run


def smoke(tmp_path, *sets: str):
    cfg = load_profile("smoke")
    apply_overrides(cfg, [f"results_dir={tmp_path / 'results'}", f"cache_dir={tmp_path / 'cache'}",
                          "data.shift=temporal", *sets], [])
    return cfg


def test_every_list_leaves_out_the_users_training_items(tmp_path):
    cfg = smoke(tmp_path)
    assert cfg.ranking.exclude_seen is True
    cell = PreparedCell(cfg, log=lambda _: None)
    samples = cell.eval_parts["ood_test"]
    exclude = cell.consumed(samples)
    train = cell.split["train"]
    for user, banned in zip(samples.users[:10], exclude):
        items = set(train.loc[train["user"] == user, "item"].tolist())
        assert set(cell.items[banned].tolist()) == items and len(items) > 0
    ctx = cell.context(tmp_path / "m")
    for name in ("mostpop", "random"):
        ranker = methods.resolve(name).fit(ctx)
        topk, _ = cell.rank_sharded(ranker, cell.eval_prompts["ood_test"], samples.histories, exclude)
        assert all(not set(row.tolist()) & set(banned.tolist()) for row, banned in zip(topk, exclude)), name
    valid_items = set(cell.split["valid"]["item"]) | set(cell.split["ood_test"]["item"])
    assert valid_items - set(train["item"])                              # only training items are ever excluded


def test_records_say_whether_consumed_items_were_excluded(tmp_path):
    on = run(smoke(tmp_path / "on"), ["mostpop"], log=lambda _: None)[0]
    off = run(smoke(tmp_path / "off", "ranking.exclude_seen=false"), ["mostpop"], log=lambda _: None)[0]
    assert on["exclude_seen"] is True and off["exclude_seen"] is False and on["key"] != off["key"]
    part_on, part_off = on["results"]["ood_test"], off["results"]["ood_test"]
    assert part_on["targets_excluded"] == 0 and part_on["excluded_per_sample"] > 0
    assert part_off["excluded_per_sample"] is None
    # the same popularity order, minus each user's consumed items: a target can only move up the list
    assert (np.array(part_on["target_ranks"]) <= np.array(part_off["target_ranks"])).all()
