"""A name -> object registry with "did you mean" errors, shared by datasets, shifts, methods and protocols.

Modelled on lm-evaluation-harness's task registry: objects register themselves with a decorator, and an
unknown name raises `UnknownNameError` naming the closest registered names.
"""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


def did_you_mean(name, choices, n: int = 1) -> str:
    """" Did you mean 'x'?" (or "'x' or 'y'" for n = 2) naming the closest of `choices` to `name`; "" if none is
    close. Every "unknown name / value" error of the suite phrases its hint with it."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=n, cutoff=0.6)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class UnknownNameError(KeyError):
    """An unknown registry name; the message suggests the closest registered ones."""

    def __init__(self, kind: str, name: str, choices: list[str]):
        hint = did_you_mean(name, choices, n=2)
        self.message = f"unknown {kind} {name!r}.{hint} Registered: {', '.join(sorted(choices))}."
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, list(self._items)) from None

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)
