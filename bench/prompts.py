"""The one prompt template, used identically by SFT, preference training and inference.

A prompt lists the user's most recent positive items (oldest first, newest last), one title per line, and asks
for the next one; the completion is a space, the item's unique title, then EOS. Titles stand alone between line
breaks, so a whitespace word tokenizer sees exactly the words of the titles (no "Title;" tokens). Every stage tokenizes through `encode_prompt` and
`encode_completion`, so the token ids a model is trained on are exactly those it is scored on: the prompt is
tokenized with the tokenizer's special tokens (BOS), the completion without, and EOS is appended by id (the
reference code bases use three different texts for SFT, DPO and inference; we do not).
"""
from __future__ import annotations

from typing import Sequence

NOUNS = {"ml-100k": "movie", "ml-10m": "movie", "yelp2018": "business", "book-crossing": "book"}

TEMPLATE = "A user's recently liked {plural}, oldest first:\n{history}\nWhich {noun} will the user like next? Answer:"


def noun_for(dataset: str) -> str:
    return NOUNS.get(dataset, "item")


def render_prompt(history_titles: Sequence[str], noun: str = "item") -> str:
    return TEMPLATE.format(plural=noun + "s", noun=noun, history="\n".join(history_titles))


def render_completion(title: str) -> str:
    return " " + title


def encode_prompt(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


def encode_completion(tokenizer, title: str) -> list[int]:
    ids = list(tokenizer(render_completion(title), add_special_tokens=False)["input_ids"])
    return ids + [tokenizer.eos_token_id]
