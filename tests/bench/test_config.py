"""Profiles and `--set` overrides (bench/config.py, methods/hparams.py)."""
import pytest

import methods
from bench.config import PROFILES, apply_overrides, load_profile
from methods.hparams import ConfigError


def test_profiles_load_with_their_values():
    tiny, smoke = load_profile("tiny"), load_profile("smoke")
    assert set(PROFILES.names()) >= {"tiny", "smoke"}
    assert tiny.backbone.name == "tiny-llama" and tiny.data.history_len == 10
    assert smoke.data.max_train_samples is not None and smoke.backbone.hidden_size < tiny.backbone.hidden_size


def test_overrides_are_typed():
    cfg = apply_overrides(load_profile("tiny"), ["sft.epochs=2", "data.max_eval_samples=null", "seed=3",
                                                 "data.eval_parts=ood_test,iid_test", "backbone.lora=true",
                                                 "causaldpo.mmd_weight=0.5"], ["causaldpo"])
    assert cfg.sft.epochs == 2.0 and isinstance(cfg.sft.epochs, float)
    assert cfg.data.max_eval_samples is None and cfg.seed == 3 and cfg.backbone.lora is True
    assert cfg.data.eval_parts == ["ood_test", "iid_test"]
    assert cfg.method_overrides == {"causaldpo": {"mmd_weight": 0.5}}
    assert methods.resolve("causaldpo", cfg.method_overrides["causaldpo"]).config.mmd_weight == 0.5


@pytest.mark.parametrize("assignment", ["sft.epochs=[1]", "seed=1.5", "backbone.lora=yes please", "data.shift=[a]"])
def test_wrong_types_are_rejected(assignment):
    with pytest.raises(ConfigError):
        apply_overrides(load_profile("tiny"), [assignment], [])


def test_method_hyperparameters_are_checked():
    with pytest.raises(ConfigError, match="beta"):
        methods.resolve("dpo", {"beta": "high"})
    assert methods.resolve("dpo+causal").config.beta == methods.resolve("dpo").config.beta


def test_the_paper_profile_pairs_each_shift_with_its_dataset():
    from bench.config import pair_dataset

    cfg = load_profile("paper")
    assert cfg.backbone.lora and cfg.backbone.dtype == "bfloat16" and cfg.backbone.gradient_checkpointing
    assert cfg.ranking.protocol == "grounding" and cfg.sft.epochs == 3
    pairs = {s: pair_dataset(apply_overrides(load_profile("paper"), [f"data.shift={s}"], []), False).data.dataset
             for s in ("temporal", "popularity", "mixed", "exposure")}
    assert pairs == {"temporal": "ml-10m", "popularity": "yelp2018", "mixed": "yelp2018", "exposure": "book-crossing"}
    named = apply_overrides(load_profile("paper"), ["data.shift=exposure", "data.dataset=ml-100k"], [])
    assert pair_dataset(named, True).data.dataset == "ml-100k"    # an explicit dataset wins
    with pytest.raises(ConfigError, match="dataset_for_shift"):
        apply_overrides(load_profile("tiny"), ["data.dataset_for_shift=ml-10m"], [])


def test_exponent_floats_without_a_dot_are_numbers():
    """YAML 1.1 reads `2e-5` as text; a float field takes it as the number the user meant, and still refuses words."""
    cfg = apply_overrides(load_profile("tiny"), ["sft.learning_rate=2e-5", "dpo.beta=1e-1"], ["dpo"])
    assert cfg.sft.learning_rate == 2e-5 and cfg.method_overrides["dpo"]["beta"] == "1e-1"
    assert methods.resolve("dpo", cfg.method_overrides["dpo"]).config.beta == 0.1
    with pytest.raises(ConfigError, match="expected float"):
        apply_overrides(load_profile("tiny"), ["sft.learning_rate=fast"], [])
