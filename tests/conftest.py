"""Fixtures shared across the test packages (the builders behind them are in `tests/support.py`)."""
from __future__ import annotations

import pytest
import torch
from transformers import LlamaForCausalLM

from tests.support import random_llama


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    """A random 2-layer Llama over a 50-token vocabulary (BOS 1, EOS 2, PAD 0), in eval mode."""
    return random_llama()


@pytest.fixture(scope="module")
def peaked_model(model) -> LlamaForCausalLM:
    """The random model with a 25x LM head: peaked next-token distributions, as a trained model has."""
    peaked = LlamaForCausalLM(model.config).float().eval()
    peaked.load_state_dict(model.state_dict())
    with torch.no_grad():
        peaked.lm_head.weight.mul_(25.0)
    return peaked
