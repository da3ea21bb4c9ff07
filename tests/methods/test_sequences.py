"""Sequence helpers (`methods.train.sequences`): the hidden-state-only forward gives the full forward's last-layer
hidden states without computing the LM head."""
import torch

from methods.train.sequences import last_hidden_states, left_padded
from tests.support import pairs, random_llama


def test_hidden_state_only_forward_matches_the_full_one_without_the_lm_head():
    model = random_llama()
    p = pairs(5)
    ids, mask, positions, _ = left_padded(p.prompts, p.chosen, 0, "cpu")
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, position_ids=positions, output_hidden_states=True,
                     use_cache=False).hidden_states[-1]
        calls = []
        hook = model.get_output_embeddings().register_forward_hook(lambda *a: calls.append(1))
        try:
            hidden = last_hidden_states(model, ids, mask, positions)
        finally:
            hook.remove()
    assert calls == []                                                     # no LM head
    real = mask.bool()
    assert hidden.shape == full.shape and torch.allclose(hidden[real], full[real], atol=1e-6)
