"""The fit cache: a method's trained model is kept under the identity of everything that shaped it, so that any
ranking protocol, table or later command ranks it without training again.

`fit_with_cache` runs `method.fit(ctx)` with `ctx.recommender` intercepted. When the fit returns exactly the
recommender that `ctx.recommender(model)` built (a plain protocol recommender over one trained LM) and the method
does not opt out (`Method.fit_cacheable`), the model (`save_pretrained`: a LoRA adapter of a few MB, or the full
weights) and `ctx.stats` are installed under ``<cache>/fits/<key>/`` in one atomic rename (`save_atomically`, as
the SFT cache does). A later run with the same key skips `fit`, loads the model (`bench.backbone.load_trained`),
restores `ctx.stats` and calls `ctx.recommender(model)` with its own ranking settings. An entry that does not
read back (no `fit.json`, a wrong key, truncated weights, a failing load) is ignored and trained again, never
trusted. Fits that wrap the model in their own recommender (SASRec, D3, RW's re-ranking, BIGRec's own grounding,
the popularity / random / oracle references) are detected and not cached.

The key is `identity` (built by the pipeline: no ranking setting is part of it) plus the ranking settings a fit
read through the context: `ctx.predict_top1` (self-play negatives: SPRec, CausalDPO, RosePO's self-hard) ranks
in batches of ``ranking.batch_size``, which may move floats, so a fit that called it is keyed by that batch size
too. Which one applies is known only after the fit, so a lookup tries the key without and with those settings: a
given identity always ends in the same one of the two.

Under data parallelism every process trains the same model; the main process saves it and the others wait at a
barrier. Whether an entry is reused is the main process's judgement, shared with the others, so that all
processes either train (and join the same collectives) or load.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bench.results import record_key
from methods.base import Method, MethodContext
from methods.train import distributed
from methods.train.cache import save_atomically, weights_problem

FIT_FILE = "fit.json"
FORMAT = 1  # of an entry's files; part of the key, so a changed layout never reads an old entry


@dataclass
class Fit:
    """What a run ranks: the recommender, the training seconds of the fit that produced its model, and the
    record's ``fit`` entry (``key``: the cache entry or None when not cached; ``reused``; ``trained_seconds``)."""

    recommender: Any
    trained_seconds: float
    info: dict


def fit_keys(identity: dict, reads: dict) -> dict[bool, str]:
    """The entry key of a fit that did not (False) or did (True) read the ranking settings `reads`."""
    base = {"format": FORMAT, **identity}
    return {False: record_key(base), True: record_key({**base, "reads": reads})}


def read_entry(path: Path, key: str) -> tuple[dict | None, str | None]:
    """(the entry's fit.json, None) when `path` holds a complete fit: its key, its stats, a config and weights
    whose safetensors headers cover their files; (None, what is wrong) otherwise."""
    try:
        meta = json.loads((path / FIT_FILE).read_text())
        if not isinstance(meta, dict) or meta.get("key") != key or not isinstance(meta.get("stats"), dict) \
                or not isinstance(meta.get("trained_seconds"), (int, float)):
            return None, f"{FIT_FILE} is not this fit's"
        problem = weights_problem(path)
        if problem:
            return None, problem
    except Exception as err:  # noqa: BLE001 - whatever does not read is trained again
        return None, f"{type(err).__name__}: {err}"
    return meta, None


def _main_says(value):
    """The main process's `value`, on every process (itself outside a launcher)."""
    return distributed.gather_rows([value], distributed.world_size())[0]


def _lookup(root: Path, keys: dict[bool, str], log) -> tuple[str, dict] | None:
    found = None
    if distributed.is_main():
        for key in keys.values():
            path = root / key
            if not path.exists():
                continue
            meta, problem = read_entry(path, key)
            if meta is not None:
                found = (key, meta)
                break
            log(f"fit: ignoring the corrupt cache entry {path} ({problem}); training again")
    return _main_says(found)


def fit_with_cache(method: Method, ctx: MethodContext, identity: dict, reads: dict, root: Path,
                   load: Callable[[Path], Any], reuse: bool = True, log=print) -> Fit:
    """`method.fit(ctx)`, or the cached model of the same fit ranked by `ctx.recommender` (see the module
    docstring). `reads`: the ranking settings `ctx.predict_top1` uses; `load(path)`: a saved model, on the device;
    `reuse=False` trains again (and leaves a stored entry in place)."""
    keys = fit_keys(identity, reads)
    cacheable = getattr(method, "fit_cacheable", True)
    unloadable = None  # an entry that reads but does not load: replaced by this fit
    if cacheable and reuse:
        found = _lookup(root, keys, log)
        if found is not None:
            key, meta = found
            start = time.perf_counter()
            try:
                model = load(root / key)
            except Exception as err:  # noqa: BLE001 - a model that does not load is trained again
                log(f"fit: ignoring the cache entry {root / key} that does not load ({type(err).__name__}: {err})")
                model = None
            loaded = distributed.gather_rows([model is not None], distributed.world_size())
            if all(loaded):  # every process loads, or every process trains (and joins the same collectives)
                ctx.stats.clear()
                ctx.stats.update(meta["stats"])
                seconds = time.perf_counter() - start
                log(f"fit: reusing {root / key} (trained in {meta['trained_seconds']:.1f}s; loaded in {seconds:.1f}s)")
                return Fit(ctx.recommender(model), float(meta["trained_seconds"]),
                           {"key": key, "reused": True, "trained_seconds": float(meta["trained_seconds"]),
                            "trained": meta.get("created"), "load_seconds": seconds})
            del model
            unloadable = key

    built, read = {}, []
    make_recommender, predict_top1 = ctx.recommender, ctx.predict_top1

    def recommender(model):
        built["model"], built["recommender"] = model, make_recommender(model)
        return built["recommender"]

    def top1(*args, **kwargs):
        read.append(True)
        return predict_top1(*args, **kwargs)

    ctx.recommender, ctx.predict_top1 = recommender, top1
    start = time.perf_counter()
    try:
        result = method.fit(ctx)
    finally:
        ctx.recommender, ctx.predict_top1 = make_recommender, predict_top1
    seconds = time.perf_counter() - start
    model = built.get("model")
    if not (cacheable and built and result is built["recommender"] and hasattr(model, "save_pretrained")):
        return Fit(result, seconds, {"key": None, "reused": False, "trained_seconds": seconds})
    key = keys[bool(read)]
    stats = dict(ctx.stats)
    if stats.get("protocol") == getattr(result, "protocol", None):  # the run's protocol, not the fit's
        del stats["protocol"]
    meta = {"key": key, "identity": identity, "reads": reads if read else {}, "trained_seconds": seconds,
            "stats": json.loads(json.dumps(stats, default=str)), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    saved = True
    if distributed.is_main():  # every process trained the same model (DDP); one saves it
        try:
            _save(model, meta, root / key, replace=key == unloadable)
            log(f"fit: saved as {root / key}")
        except Exception as err:  # noqa: BLE001 - a cache that cannot be written costs the reuse, not the run
            saved = False
            log(f"fit: could not save {root / key} ({type(err).__name__}: {err}); ranking the trained model")
    distributed.barrier()
    saved = _main_says(saved)
    return Fit(result, seconds, {"key": key if saved else None, "reused": False, "trained_seconds": seconds})


def _save(model, meta: dict, path: Path, replace: bool = False) -> None:
    """Install the model and its fit.json; an entry already there is kept if it reads back (another runner saved
    the same fit meanwhile), unless `replace` (it read back but did not load)."""
    class _Entry:  # the model and its fit.json land in one atomic rename
        def save_pretrained(self, target):
            model.save_pretrained(target)
            (Path(target) / FIT_FILE).write_text(json.dumps(meta, sort_keys=True))

    save_atomically(_Entry(), path, valid=None if replace else lambda p: read_entry(p, meta["key"])[0] is not None)
