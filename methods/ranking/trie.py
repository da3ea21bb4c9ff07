"""A token trie over the catalogue's completions, for constrained decoding and output -> item mapping.

Every completion is an item title's token ids followed by EOS. EOS must end every completion and occur nowhere else,
so no completion is a prefix of another even when a title is a token-prefix of another title: every completion ends
at a leaf. `allowed(prefix)` lists the tokens that keep a generated prefix inside the catalogue (the children of its
node); `item(completion)` maps a generated sequence back to the catalogue position whose completion it equals.

Nodes are numbered in insertion order, the root is node 0; `node(prefix)` gives a prefix's node (None if absent).
"""
from __future__ import annotations

from typing import Sequence


class Trie:
    def __init__(self, completions: Sequence[Sequence[int]], eos_id: int):
        self.eos_id = eos_id
        self._children: list[dict[int, int]] = [{}]
        self._item_at: dict[int, int] = {}  # leaf node -> catalogue position
        for position, completion in enumerate(completions):
            tokens = [int(t) for t in completion]
            if not tokens or tokens[-1] != eos_id or eos_id in tokens[:-1]:
                raise ValueError(f"completion {position} must end with EOS ({eos_id}) and contain it only there")
            node = 0
            for token in tokens:
                nxt = self._children[node].get(token)
                if nxt is None:
                    nxt = len(self._children)
                    self._children[node][token] = nxt
                    self._children.append({})
                node = nxt
            if node in self._item_at:
                raise ValueError(f"completions {self._item_at[node]} and {position} are identical")
            self._item_at[node] = position

    def __len__(self) -> int:
        """Number of nodes, root included."""
        return len(self._children)

    def node(self, prefix: Sequence[int]) -> int | None:
        node = 0
        for token in prefix:
            node = self._children[node].get(int(token))
            if node is None:
                return None
        return node

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        """Tokens that may follow `prefix` (sorted); empty if `prefix` is complete or not in the trie."""
        node = self.node(prefix)
        return [] if node is None else sorted(self._children[node])

    def item(self, completion: Sequence[int]) -> int | None:
        """Catalogue position whose completion equals `completion` exactly, else None."""
        node = self.node(completion)
        return None if node is None else self._item_at.get(node)
