"""The one prompt template, used identically by SFT, preference training and inference.

A prompt lists the user's most recent positive items (oldest first, newest last), one title per line, and asks
for the next one. Two renderings of that text:

* plain (base models, the tiny backbones): the template below ending in "Answer:"; the completion is a space, the
  item's unique title, then EOS. Titles stand alone between line breaks, so a whitespace word tokenizer sees exactly
  the words of the titles (no "Title;" tokens). The prompt is tokenized with the tokenizer's special tokens (BOS).
* chat (instruction-tuned models, ``backbone.chat_template``): the same request as the user turn of the
  tokenizer's own chat template with the assistant turn opened (``add_generation_prompt``); the completion is the
  title, then EOS (the tokenizer's end-of-turn token for such models). The template writes its special tokens as
  text, so the prompt is tokenized without adding any.

Every stage tokenizes through `encode_prompt` and `encode_completion`, so the token ids a model is trained on are
exactly those it is scored on (the reference code bases use three different texts for SFT, DPO and inference; we do
not). A subword tokenizer may merge across the prompt/title boundary (BPE folds the leading space or newline into a
title's first token): a title's completion tokens are therefore those it becomes *after the prompt's fixed ending*
("Answer:", or the chat template's assistant header), cut from the joint tokenization of that ending and the title;
`check_joint_tokenization` verifies on real prompts that prompt ids + completion ids equal the joint tokenization
of prompt text + completion text, and stops the run with the offending title otherwise.

Titles are written as the catalogue has them, or (``data.titles=natural``) with a trailing article moved to the
front: MovieLens files 21% of its titles as "Lion King, The (1994)", a form a pretrained LLM has rarely read.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Mapping, Sequence

NOUNS = {"ml-100k": "movie", "ml-10m": "movie", "yelp2018": "business", "book-crossing": "book"}

TEMPLATE = "A user's recently liked {plural}, oldest first:\n{history}\nWhich {noun} will the user like next? Answer:"
CHAT_REQUEST = ("A user's recently liked {plural}, oldest first:\n{history}\nWhich {noun} will the user like next? "
                "Answer with its title only.")
PLAIN_ENDING = "Answer:"
_MARK = "\x00HISTORY\x00"  # stands for the request while the chat template's fixed ending is cut out


TITLE_STYLES = ("catalogue", "natural")
# "Name, Article (year)" or "Name, Article (alternative title) (year)", as MovieLens writes them; "L'" joins the name
_TRAILING_ARTICLE = re.compile(r"^(?P<name>[^()]+?), (?P<article>The|A|An|La|Le|Les|L'|Il|Das|Der|Die|El)"
                               r"(?P<rest> \(.*)?$")


def natural_title(title: str) -> str:
    """'Lion King, The (1994)' -> 'The Lion King (1994)'; other titles unchanged."""
    match = _TRAILING_ARTICLE.match(title)
    if match is None:
        return title
    article = match["article"]
    space = "" if article.endswith("'") else " "
    return article + space + match["name"] + (match["rest"] or "")


def display_titles(titles: Mapping[int, str], style: str) -> dict[int, str]:
    """Every item's title as prompts write it (`data.titles`). A natural form that another item's title already
    has is not used: those items keep their catalogue titles (unique, so the result is unique too)."""
    if style not in TITLE_STYLES:
        raise ValueError(f"data.titles={style!r}: expected one of {', '.join(TITLE_STYLES)}")
    if style == "catalogue":
        return dict(titles)
    shown = {item: natural_title(title) for item, title in titles.items()}
    while True:
        counts = Counter(shown.values())
        clashing = [item for item, t in shown.items() if counts[t] > 1 and t != titles[item]]
        if not clashing:
            return shown
        for item in clashing:
            shown[item] = titles[item]


def noun_for(dataset: str) -> str:
    return NOUNS.get(dataset, "item")


def uses_chat_template(tokenizer, setting: bool | None) -> bool:
    """`backbone.chat_template`: None means "when the tokenizer has a chat template"."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if setting and not has:
        raise ValueError("backbone.chat_template=true, but the tokenizer has no chat template")
    return has if setting is None else bool(setting)


def render_prompt(history_titles: Sequence[str], noun: str = "item", chat_tokenizer=None) -> str:
    """The prompt text; with `chat_tokenizer`, wrapped in that tokenizer's chat template."""
    if chat_tokenizer is None:
        return TEMPLATE.format(plural=noun + "s", noun=noun, history="\n".join(history_titles))
    request = CHAT_REQUEST.format(plural=noun + "s", noun=noun, history="\n".join(history_titles))
    return chat_tokenizer.apply_chat_template([{"role": "user", "content": request}], tokenize=False,
                                              add_generation_prompt=True)


def render_completion(title: str, chat: bool = False) -> str:
    return title if chat else " " + title


def prompt_ending(tokenizer=None, chat: bool = False) -> str:
    """The text every prompt ends with: what a title's first token follows."""
    if not chat:
        return PLAIN_ENDING
    text = tokenizer.apply_chat_template([{"role": "user", "content": _MARK}], tokenize=False,
                                         add_generation_prompt=True)
    return text[text.rindex(_MARK) + len(_MARK):]


def encode_prompt(tokenizer, text: str, chat: bool = False) -> list[int]:
    return list(tokenizer(text, add_special_tokens=not chat)["input_ids"])


def encode_completion(tokenizer, title: str, chat: bool = False) -> list[int]:
    """The title's tokens as they come after the prompt's fixed ending, then EOS (by id)."""
    ending = prompt_ending(tokenizer, chat)
    alone = tokenizer(ending, add_special_tokens=False)["input_ids"]
    joint = tokenizer(ending + render_completion(title, chat), add_special_tokens=False)["input_ids"]
    if list(joint[: len(alone)]) != list(alone):
        raise ValueError(f"the tokenizer merges the prompt's ending {ending!r} with the title {title!r} "
                         f"({tokenizer.convert_ids_to_tokens(joint[: len(alone) + 1])}): titles cannot be scored as "
                         f"separate tokens; end the prompt at a token boundary")
    return list(joint[len(alone):]) + [tokenizer.eos_token_id]


def check_joint_tokenization(tokenizer, prompt_texts: Sequence[str], titles: Sequence[str], chat: bool = False
                             ) -> None:
    """Raise if some prompt + title, tokenized as one text, differs from prompt ids + completion ids (EOS aside)."""
    for text, title in zip(prompt_texts, titles):
        joint = encode_prompt(tokenizer, text + render_completion(title, chat), chat)
        split = encode_prompt(tokenizer, text, chat) + encode_completion(tokenizer, title, chat)[:-1]
        if joint != split:
            tail = len(encode_completion(tokenizer, title, chat)) + 2
            raise ValueError(f"title {title!r} tokenizes differently after a real prompt than after the prompt's "
                             f"ending: {tokenizer.convert_ids_to_tokens(joint[-tail:])} (jointly) vs "
                             f"{tokenizer.convert_ids_to_tokens(split[-tail:])} (prompt, then title)")
