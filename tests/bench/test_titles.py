"""`data.titles`: the catalogue's titles or their natural form ('Lion King, The (1994)' -> 'The Lion King (1994)'),
unique either way, and used by every prompt, completion and cached model of a cell."""
from __future__ import annotations

import pytest

from bench.backbone import load_tokenizer
from bench.config import apply_overrides, load_profile
from bench.pipeline import PreparedCell
from bench.prompts import display_titles, natural_title
from splits.datasets import load_dataset


@pytest.mark.parametrize("catalogue, natural", [
    ("Lion King, The (1994)", "The Lion King (1994)"),
    ("Life Less Ordinary, A (1997)", "A Life Less Ordinary (1997)"),
    ("Tin Drum, The (Blechtrommel, Die) (1979)", "The Tin Drum (Blechtrommel, Die) (1979)"),
    ("Boot, Das (1981)", "Das Boot (1981)"),
    ("Enfer, L' (1994)", "L'Enfer (1994)"),
    ("Ice Storm, The (1997) [2]", "The Ice Storm (1997) [2]"),
    ("Firm, The", "The Firm"),
])
def test_a_trailing_article_moves_to_the_front(catalogue, natural):
    assert natural_title(catalogue) == natural


@pytest.mark.parametrize("title", ["Cry, the Beloved Country (1995)", "Paris, Texas (1984)", "Fargo (1996)",
                                   "Sex, Lies, and Videotape (1989)", "Queen Margot (Reine Margot, La) (1994)"])
def test_other_titles_are_left_alone(title):
    assert natural_title(title) == title


def test_a_natural_form_another_item_already_has_is_not_used():
    titles = {1: "Firm, The (1993)", 2: "The Firm (1993)", 3: "Sting, The (1973)"}
    assert display_titles(titles, "natural") == {1: "Firm, The (1993)", 2: "The Firm (1993)", 3: "The Sting (1973)"}
    assert display_titles(titles, "catalogue") == titles


def test_every_movielens_title_stays_unique():
    titles = load_dataset("ml-100k").titles
    shown = display_titles(titles, "natural")
    assert len(set(shown.values())) == len(shown) == len(titles)
    moved = {titles[i]: shown[i] for i in titles if shown[i] != titles[i]}
    assert moved["Lion King, The (1994)"] == "The Lion King (1994)"
    assert len(moved) > len(titles) // 5                 # MovieLens files a fifth of its titles this way


def test_an_unknown_style_names_the_option():
    with pytest.raises(ValueError, match="data.titles='plain'.*catalogue, natural"):
        display_titles({1: "Fargo (1996)"}, "plain")


def _cell(tmp_path, style):
    cfg = load_profile("smoke")
    apply_overrides(cfg, [f"results_dir={tmp_path / 'results'}", f"cache_dir={tmp_path / 'cache'}",
                          "data.shift=temporal", f"data.titles={style}"], [])
    return PreparedCell(cfg, log=lambda _: None)


def test_prompts_and_completions_write_the_natural_titles_and_the_sft_model_is_another(tmp_path, monkeypatch):
    natural, catalogue = _cell(tmp_path, "natural"), _cell(tmp_path, "catalogue")
    item = next(i for i, t in catalogue.titles.items() if t.endswith(", The (1994)") and i in natural.completions)
    shown = natural.titles[item]
    assert shown.startswith("The ") and shown != catalogue.titles[item]
    decoded = natural.tokenizer.decode(natural.completions[item], skip_special_tokens=True)
    assert decoded.strip() == shown
    history = [item]
    assert shown in natural.prompt_text(history) and catalogue.titles[item] in catalogue.prompt_text(history)
    assert natural.sft_tag != catalogue.sft_tag
    # a real model's tokenizer is the same for both forms: the title form alone must tell the cached models apart
    both = list(natural.titles.values()) + list(catalogue.titles.values())
    monkeypatch.setattr("bench.pipeline.load_tokenizer",
                        lambda backbone, texts, cache: load_tokenizer(backbone, both + texts, cache))
    assert _cell(tmp_path, "catalogue").sft_tag != _cell(tmp_path, "natural").sft_tag


def test_the_sft_model_is_keyed_by_the_settings_that_differ_from_their_defaults(tmp_path):
    """A setting at its default (given or not) and `allow_download` leave the SFT tag alone, so a field added later
    with a behaviour-keeping default keeps every cached SFT model (and the fits keyed by it) found; a setting
    that changes the model changes the tag."""
    def tag(*sets):
        cfg = load_profile("smoke")
        apply_overrides(cfg, [f"results_dir={tmp_path / 'results'}", f"cache_dir={tmp_path / 'cache'}",
                              "data.shift=temporal", *sets], [])
        return PreparedCell(cfg, log=lambda _: None).sft_tag

    plain = tag()
    assert tag("backbone.autocast=fp32", "sft.group_by_length=false") == plain      # the defaults, spelt out
    assert tag("backbone.allow_download=true") == plain
    assert tag("backbone.lora=true") != plain and tag("sft.learning_rate=0.01") != plain
