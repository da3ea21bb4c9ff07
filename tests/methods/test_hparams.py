"""Method settings with a fixed set of values (`choices` in the field metadata) are checked when a method is resolved,
so a misspelt value fails before the SFT stage, with its choices and a "did you mean"."""
from __future__ import annotations

import dataclasses

import pytest

import methods
from methods.hparams import ConfigError, check_choices, describe_fields, make_config


def _method_names() -> list[str]:
    names = list(methods.METHODS.names())
    return names + [f"{n}+causal" for n in names if _has_causal_variant(n)]


def _has_causal_variant(name: str) -> bool:
    try:
        methods.method_class(f"{name}+causal")
        return True
    except KeyError:
        return False


def fields_with_choices() -> list[tuple[str, str, tuple]]:
    return [(name, f.name, f.metadata["choices"]) for name in _method_names()
            for f in dataclasses.fields(methods.method_class(name).Config) if "choices" in f.metadata]


def test_the_fields_with_a_fixed_set_of_values_declare_it():
    declared = {(name, field) for name, field, _ in fields_with_choices()}
    assert {("bigrec", "embedder"), ("bigrec", "protocol"), ("d3", "protocol"), ("d3", "loss_type"),
            ("sasrec", "loss_type"), ("sasrec", "valid_metric"), ("rosepo", "oracle"),
            ("rosepo", "negative_strategy")} <= declared


@pytest.mark.parametrize("name", _method_names())
def test_every_default_is_one_of_its_choices(name):
    method = methods.resolve(name)
    check_choices(method.config, name)


@pytest.mark.parametrize("name, field, choices", fields_with_choices())
def test_a_misspelt_choice_is_refused_with_the_choices_and_a_did_you_mean(name, field, choices):
    good = choices[-1]
    assert getattr(methods.resolve(name, {field: good}).config, field) == good
    with pytest.raises(ConfigError) as err:
        methods.resolve(name, {field: f"{good}x"})
    assert str(err.value).startswith(f"--set {name}.{field}: '{good}x' is not one of {', '.join(choices)}. "
                                     f"Did you mean '{good}'")


def test_the_checker_reads_any_dataclass_and_lists():
    @dataclasses.dataclass
    class Config:
        mode: str = dataclasses.field(default="a", metadata={"choices": ("a", "b")})
        modes: list[str] = dataclasses.field(default_factory=lambda: ["a"], metadata={"choices": ("a", "b")})
        free: str = "anything"

    assert make_config(Config, {"mode": "b", "modes": "a,b", "free": "z"}, "--set x").modes == ["a", "b"]
    with pytest.raises(ConfigError, match=r"--set x\.modes: 'c' is not one of a, b\.$"):
        make_config(Config, {"modes": "a,c"}, "--set x")


def test_a_config_built_by_hand_is_checked_too():
    rosepo = methods.method_class("rosepo")
    with pytest.raises(ConfigError, match="rosepo.oracle: 'constnt' is not one of mf, constant. Did you mean"):
        rosepo(rosepo.Config(oracle="constnt"))


def test_an_unknown_hyperparameter_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"--set d3: unknown hyperparameter 'protocl'\. Did you mean 'protocol'\?"):
        methods.resolve("d3", {"protocl": "run"})


def test_ls_method_shows_the_choices():
    rows = {row[0]: row[3] for row in describe_fields(methods.method_class("rosepo").Config)}
    assert rows["oracle"].endswith("[choices: mf, constant]")


@pytest.mark.parametrize("name", ["causaldpo", "causaldpo-selfplay", "simpo+causal"])
@pytest.mark.parametrize("field, bad, good", [("assignment", "jointt", "joint"), ("mmd_target", "rewrd", "reward")])
def test_the_causal_regularizers_settings_are_checked_at_resolve(name, field, bad, good):
    with pytest.raises(ConfigError) as err:
        methods.resolve(name, {field: bad})
    assert str(err.value).startswith(f"--set {name}.{field}: '{bad}' is not one of ")
    assert str(err.value).endswith(f"Did you mean '{good}'?")
