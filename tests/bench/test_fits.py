"""The fit cache (`bench.fits`) on a fake method and context: what is kept, under which key, what is reused, and
what is never trusted. The end-to-end runs are in tests/e2e/test_fit_cache.py."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM

from bench.fits import FIT_FILE, fit_keys, fit_with_cache, read_entry
from tests.support import random_llama

IDENTITY = {"method": "fake", "seed": 0}
READS = {"ranking.batch_size": 16}


class Ranker:
    """What `ctx.recommender(model)` builds: a protocol recommender over the model."""

    def __init__(self, model, protocol="likelihood"):
        self.model, self.protocol = model, protocol


class FakeMethod:
    """Trains nothing but counts its fits; `wrap`: returns its own recommender around the protocol one (as RW);
    `self_play`: calls `ctx.predict_top1` (as SPRec)."""

    fit_cacheable = True

    def __init__(self, wrap=False, self_play=False, seed=0):
        self.wrap, self.self_play, self.seed, self.fits = wrap, self_play, seed, 0

    def fit(self, ctx):
        self.fits += 1
        model = random_llama(seed=self.seed)
        if self.self_play:
            ctx.predict_top1(model, [[1, 2]])
        ctx.stats.update(seconds_per_epoch=1.5, protocol="likelihood", pairs=[3, 4])
        built = ctx.recommender(model)
        return SimpleNamespace(inner=built) if self.wrap else built


def context(protocol="likelihood"):
    return SimpleNamespace(recommender=lambda model: Ranker(model, protocol), predict_top1=lambda model, p: None,
                           stats={})


def load(path: Path):
    return AutoModelForCausalLM.from_pretrained(path).eval()


def fit(method, tmp_path, protocol="likelihood", reuse=True, lines=None):
    ctx = context(protocol)
    out = fit_with_cache(method, ctx, IDENTITY, READS, tmp_path / "fits", load, reuse,
                         log=(lines if lines is not None else []).append)
    return out, ctx


def same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_fit_is_saved_and_ranked_again_under_another_protocol_without_fitting(tmp_path):
    method = FakeMethod()
    first, ctx1 = fit(method, tmp_path)
    assert method.fits == 1 and first.info["reused"] is False
    key = first.info["key"]
    assert key == fit_keys(IDENTITY, READS)[False] and (tmp_path / "fits" / key / FIT_FILE).is_file()
    lines = []
    second, ctx2 = fit(method, tmp_path, protocol="grounding", lines=lines)
    assert method.fits == 1                                                   # no fit: the saved model is ranked
    assert second.info == {**second.info, "key": key, "reused": True}
    assert second.trained_seconds == first.trained_seconds == second.info["trained_seconds"]
    assert isinstance(second.recommender, Ranker) and second.recommender.protocol == "grounding"
    assert same_weights(second.recommender.model, first.recommender.model)
    assert ctx2.stats == {"seconds_per_epoch": 1.5, "pairs": [3, 4]}          # the run's protocol is not the fit's
    assert any(line.startswith(f"fit: reusing {tmp_path / 'fits' / key}") for line in lines)


def test_reuse_false_fits_again(tmp_path):
    method = FakeMethod()
    fit(method, tmp_path)
    again, _ = fit(method, tmp_path, reuse=False)
    assert method.fits == 2 and again.info["reused"] is False


def test_a_fit_that_reads_the_ranking_batch_size_is_keyed_by_it(tmp_path):
    method = FakeMethod(self_play=True)
    first, _ = fit(method, tmp_path)
    assert first.info["key"] == fit_keys(IDENTITY, READS)[True] != fit_keys(IDENTITY, READS)[False]
    fit(method, tmp_path)
    assert method.fits == 1                                                   # found under the key with the reads
    other = fit_with_cache(method, context(), IDENTITY, {"ranking.batch_size": 8}, tmp_path / "fits", load,
                           log=lambda _: None)
    assert method.fits == 2 and other.info["key"] != first.info["key"]


def test_another_identity_is_another_fit(tmp_path):
    method = FakeMethod()
    first, _ = fit(method, tmp_path)
    other = fit_with_cache(method, context(), {**IDENTITY, "seed": 1}, READS, tmp_path / "fits", load,
                           log=lambda _: None)
    assert method.fits == 2 and other.info["key"] != first.info["key"]


@pytest.mark.parametrize("method", [FakeMethod(wrap=True), SimpleNamespace(fit_cacheable=False, fit=FakeMethod().fit)],
                         ids=["own recommender", "opted out"])
def test_fits_that_are_not_a_plain_protocol_recommender_or_opt_out_are_not_cached(tmp_path, method):
    out, _ = fit(method, tmp_path)
    assert out.info == {"key": None, "reused": False, "trained_seconds": out.trained_seconds}
    assert not (tmp_path / "fits").exists()


def _truncate(entry: Path):
    weights = entry / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])


def _no_fit_file(entry: Path):
    (entry / FIT_FILE).unlink()


def _other_key(entry: Path):
    text = (entry / FIT_FILE).read_text()
    (entry / FIT_FILE).write_text(text.replace(entry.name, "0" * 16))


def _garbled_config(entry: Path):  # the headers read, the model does not load
    (entry / "config.json").write_text("{}")


@pytest.mark.parametrize("damage", [_truncate, _no_fit_file, _other_key, _garbled_config])
def test_a_corrupt_or_partial_entry_is_ignored_and_replaced(tmp_path, damage):
    method = FakeMethod()
    first, _ = fit(method, tmp_path)
    entry = tmp_path / "fits" / first.info["key"]
    damage(entry)
    lines = []
    again, _ = fit(method, tmp_path, lines=lines)
    assert method.fits == 2 and again.info["reused"] is False and again.info["key"] == first.info["key"]
    assert any("ignoring" in line for line in lines), lines
    assert read_entry(entry, first.info["key"])[0] is not None             # replaced by the new fit
    third, _ = fit(method, tmp_path)
    assert method.fits == 2 and third.info["reused"] is True


def test_compute_accounting_counts_a_fit_ranked_by_two_protocols_once():
    from bench.leaderboard.publish import compute_seconds
    likelihood = {"key": "a", "fit": {"key": "f1", "reused": False}, "fit_seconds": 10.0, "results": {}}
    grounding = {"key": "b", "fit": {"key": "f1", "reused": True}, "fit_seconds": 10.0, "results": {}}
    uncached = {"key": "c", "fit": {"key": None, "reused": False}, "fit_seconds": 3.0, "results": {}}
    older = {"key": "d", "fit_seconds": 2.0, "results": {}}                  # a record from before the fit cache
    assert compute_seconds([likelihood, grounding, uncached, older])["fit"] == 15


def test_a_runner_that_finishes_the_same_fit_second_keeps_the_first_ones_entry(tmp_path):
    """Two runners on one cache train the same fit side by side: the one that installs second finds a complete
    entry under the key and keeps it (readers may be loading it); nothing half-written is left behind."""
    other = FakeMethod()

    class Racing(FakeMethod):
        def fit(self, ctx):
            fit(other, tmp_path)                      # the other runner saves first, while this one trains
            return super().fit(ctx)

    racing = Racing(seed=1)                           # other weights, so which entry stayed is visible
    out, _ = fit(racing, tmp_path)
    entry = tmp_path / "fits" / out.info["key"]
    assert other.fits == racing.fits == 1 and read_entry(entry, entry.name)[0] is not None
    assert same_weights(load(entry), random_llama(seed=0))
    assert [p.name for p in (tmp_path / "fits").iterdir()] == [entry.name]


def test_a_cache_that_cannot_be_written_costs_the_reuse_not_the_run(tmp_path):
    (tmp_path / "fits").write_text("a file where the folder should be")
    lines = []
    out, _ = fit(FakeMethod(), tmp_path, lines=lines)
    assert isinstance(out.recommender, Ranker) and out.info["key"] is None
    assert any(line.startswith("fit: could not save") for line in lines), lines
