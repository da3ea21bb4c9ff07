"""What every registered method (and every `<pairwise>+causal` variant) promises, checked over the whole registry:
a paper reference, a module docstring, help text on every hyperparameter, a config that survives the round trip
through `--set` values, a declared workload; and for the preference methods, that the pairs and optimizer steps they
declare are what their fit does on the smoke profile."""
import dataclasses
import re
import sys

import pytest
import yaml

import methods
from methods.preference import PreferenceMethod

REGISTERED = methods.METHODS.names()
CAUSAL_VARIANTS = [f"{name}+causal" for name in REGISTERED
                   if issubclass(methods.METHODS.get(name), PreferenceMethod) and not methods.METHODS.get(name).causal
                   and "+" not in name]
EVERY = REGISTERED + CAUSAL_VARIANTS


def test_the_registry_holds_the_paper_methods_and_causal_variants():
    assert {"dpo", "causaldpo", "simpo", "sdpo", "sprec", "sasrec", "mostpop"} <= set(REGISTERED)
    assert {"simpo+causal", "cpo+causal", "drdpo+causal"} <= set(CAUSAL_VARIANTS)


@pytest.mark.parametrize("name", EVERY)
def test_a_method_names_its_paper_and_documents_itself(name):
    cls = methods.method_class(name)
    assert cls.paper.title.strip(), name
    assert cls.paper.arxiv == "" or re.fullmatch(r"\d{4}\.\d{4,5}", cls.paper.arxiv), (name, cls.paper.arxiv)
    assert (sys.modules[cls.__module__].__doc__ or "").strip(), f"{cls.__module__} has no docstring"


@pytest.mark.parametrize("name", EVERY)
def test_every_hyperparameter_has_help_text(name):
    for f in dataclasses.fields(methods.method_class(name).Config):
        assert len(f.metadata.get("help", "")) >= 8, f"{name}.{f.name} has no help text"


@pytest.mark.parametrize("name", EVERY)
def test_a_config_round_trips_through_set_values(name):
    method = methods.resolve(name)
    values = dataclasses.asdict(method.config)
    assert methods.resolve(name, values).config == method.config
    # as `--set name.key=value` hands them over: the text YAML-read (bench.config.apply_overrides)
    as_set = {k: yaml.safe_load(",".join(map(str, v)) if isinstance(v, list) else yaml.safe_dump(v).strip()
                                .removesuffix("...").strip()) for k, v in values.items()}
    assert methods.resolve(name, as_set).config == method.config


@pytest.mark.parametrize("name", EVERY)
def test_declared_choices_are_enforced(name):
    cls = methods.method_class(name)
    for f in dataclasses.fields(cls.Config):
        choices = f.metadata.get("choices")
        if choices:
            assert f.default in choices, (name, f.name)
            with pytest.raises(ValueError, match="is not one of"):
                methods.resolve(name, {f.name: f"{f.default}x"})


# --- declared work against a real fit -----------------------------------------------------------------------------

PAIRWISE = ["simpo", "cpo", "drdpo", "dmpo", "rosepo", "causaldpo", "simpo+causal"]   # dpo, sdpo, sprec: test_planner


@pytest.mark.slow
def test_declared_pairs_and_steps_are_what_the_fit_does(tmp_path):
    from bench.config import apply_overrides, load_profile
    from bench.pipeline import run
    from bench.planner.grid_work import grid_work

    cfg = apply_overrides(load_profile("smoke"), [f"results_dir={tmp_path / 'r'}", f"cache_dir={tmp_path / 'c'}",
                                                  "data.shift=exposure", "data.max_eval_samples=4"], PAIRWISE)
    size = grid_work("smoke", ["table6"], [0], [], tmp_path / "c", log=lambda m: None)[0].size.size  # exposure
    records = {r["method"]: r for r in run(cfg, PAIRWISE, log=lambda m: None)}
    for name in PAIRWISE:
        steps = [w for w in methods.resolve(name).workload(size) if w.kind == "preference_step"]
        stats = records[name]["method_stats"]
        assert stats["pairs"] * (1 + stats["negatives"]) == sum(w.sequences for w in steps), name
        assert stats["optimizer_steps"] == sum(w.count for w in steps), name
        assert all(w.causal == name.startswith("causaldpo") or name.endswith("+causal") for w in steps), name
