"""A token trie over the catalogue's completions, for constrained decoding and output -> item mapping.

Every completion is an item title's token ids followed by EOS. EOS must end every completion and occur nowhere else,
so no completion is a prefix of another even when a title is a token-prefix of another title: every completion ends
at a leaf. `allowed(prefix)` lists the tokens that keep a generated prefix inside the catalogue (the children of its
node); `item(completion)` maps a generated sequence back to the catalogue position whose completion it equals.

Nodes are numbered in insertion order, the root is node 0; `node(prefix)` gives a prefix's node (None if absent).

Excluding items (a user's already-consumed items): `blocked(positions)` gives the nodes all of whose items are
excluded, and `allowed(prefix, blocked)` drops the tokens leading into them, so constrained decoding can only ever
complete an item that is not excluded.
"""
from __future__ import annotations

from typing import Sequence


class Trie:
    def __init__(self, completions: Sequence[Sequence[int]], eos_id: int):
        self.eos_id = eos_id
        self._children: list[dict[int, int]] = [{}]
        self._item_at: dict[int, int] = {}  # leaf node -> catalogue position
        self._parent: list[int] = [-1]
        self._leaf: list[int] = []  # catalogue position -> leaf node
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
                    self._parent.append(node)
                node = nxt
            if node in self._item_at:
                raise ValueError(f"completions {self._item_at[node]} and {position} are identical")
            self._item_at[node] = position
            self._leaf.append(node)
        self._items_below = [0] * len(self._children)
        for leaf in self._leaf:
            for ancestor in self._path(leaf):
                self._items_below[ancestor] += 1

    def _path(self, node: int):
        while node >= 0:
            yield node
            node = self._parent[node]

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

    def allowed(self, prefix: Sequence[int], blocked: frozenset[int] | set[int] = frozenset()) -> list[int]:
        """Tokens that may follow `prefix` (sorted) without entering a `blocked` node; empty if `prefix` is complete
        or not in the trie."""
        node = self.node(prefix)
        if node is None:
            return []
        return sorted(t for t, child in self._children[node].items() if child not in blocked)

    def blocked(self, positions) -> set[int]:
        """Nodes under which every item is one of the excluded catalogue `positions` (the root only if all are)."""
        excluded: dict[int, int] = {}
        for position in {int(p) for p in positions}:
            for node in self._path(self._leaf[position]):
                excluded[node] = excluded.get(node, 0) + 1
        return {node for node, n in excluded.items() if n == self._items_below[node]}

    def item(self, completion: Sequence[int]) -> int | None:
        """Catalogue position whose completion equals `completion` exactly, else None."""
        node = self.node(completion)
        return None if node is None else self._item_at.get(node)
