"""Methods: one module per method, a registry with "did you mean", the shared preference trainer and losses.

`resolve(name, overrides)` returns a configured method instance; `<name>+causal` composes the causal
regularizer with any registered pairwise preference method (e.g. `simpo+causal`, `cpo+causal`, `drdpo+causal`):
same loss and reduction, plus the regularizer, whose backdoor adjustment uses the method's own reduction.
"""
from __future__ import annotations

from methods import baselines, bigrec, causaldpo, cpo, d3, dmpo, dpo, drdpo, rosepo, rw, sasrec, sdpo, simpo, sprec  # noqa: F401  (registration)
from methods.base import METHODS, Method, MethodContext, Paper, TrainingSamples
from methods.hparams import make_config
from methods.preference import PreferenceMethod, with_causal
from splits.registry import UnknownNameError


def method_class(name: str) -> type[Method]:
    if name.endswith("+causal") and name not in METHODS:
        base = METHODS.get(name.removesuffix("+causal"))
        if not issubclass(base, PreferenceMethod) or base.causal:
            raise UnknownNameError("method", name, METHODS.names())
        if name not in _CAUSAL_VARIANTS:  # one class per variant, so its configs compare equal
            _CAUSAL_VARIANTS[name] = with_causal(base)
        return _CAUSAL_VARIANTS[name]
    return METHODS.get(name)


_CAUSAL_VARIANTS: dict[str, type[Method]] = {}


def resolve(name: str, overrides: dict | None = None) -> Method:
    cls = method_class(name)
    return cls(make_config(cls.Config, overrides or {}, f"--set {name}"))


__all__ = ["METHODS", "Method", "MethodContext", "Paper", "TrainingSamples", "method_class", "resolve"]
