"""SPRec's self-play loop (methods/sprec.py) on a stub context: negatives, SFT step, reference, rounds."""
import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from methods import resolve
from methods.base import MethodContext, TrainingSamples
from methods.train.config import PreferenceConfig
from methods.train.preference_trainer import reference_logps
from tests.support import catalogue_for


def tiny_model():
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                        num_key_value_heads=2, intermediate_size=32, pad_token_id=0))


class Tok:
    pad_token_id = 0


def stub_context():
    """A MethodContext whose generation always predicts item 10, with an event log of every stage."""
    items = np.arange(10, 16)
    completions = {int(i): [int(i), 2] for i in items}
    targets = np.array([10, 11, 12, 13, 14, 15, 10, 11])
    prompts = [[1, 3 + i % 5, 4] for i in range(8)]
    events, refs = [], []

    def predict_top1(model, batch):
        events.append(("generate", len(batch)))
        return np.array([10] * len(batch))                    # the model always predicts item 10

    def sft_step(model, batch, batch_targets, epochs, lr):
        events.append(("sft", len(batch)))
        with torch.no_grad():
            model.model.embed_tokens.weight.add_(0.01)        # a visible change
        return model, 1.0

    def reference(loader, tag, pairs):
        model = loader()
        events.append(("reference", tag))
        refs.append((pairs, model.model.embed_tokens.weight.detach().clone()))
        return reference_logps(model, pairs, 0, "cpu")

    ctx = MethodContext(
        split=None, train=TrainingSamples(prompts, targets, [np.array([1])] * 8, np.arange(8), np.arange(8)),
        items=items, catalogue=catalogue_for(items, completions), sft_config=None,
        completions=completions, train_counts=np.ones(6), seed=0, device="cpu", tokenizer=Tok(),
        preference=PreferenceConfig(epochs=1, learning_rate=1e-3, batch_size=4, warmup_ratio=0.0),
        load_sft_model=tiny_model, load_base_model=tiny_model, sft_tag="sft", sft_step=sft_step,
        reference_logps=reference, recommender=lambda model: model, predict_top1=predict_top1, output_dir=None,
        log=lambda m: None)
    return ctx, events, refs, completions


def test_each_round_generates_negatives_then_sft_then_dpo_against_that_sft_model():
    ctx, events, refs, completions = stub_context()
    method = resolve("sprec", {"iterations": 2, "pairs_per_iteration": 8})
    model = method.fit(ctx)
    kinds = [e[0] for e in events]
    assert kinds == ["generate", "sft", "reference"] * 2
    assert events[2][1] != events[5][1]                       # each round has its own reference tag
    pairs, ref_weights = refs[0]
    assert len(pairs) == 6                                    # the two samples whose target is 10 give no pair
    assert all(r == [completions[10]] for r in pairs.rejected)
    assert all(c != completions[10] for c in pairs.chosen)
    initial = tiny_model().model.embed_tokens.weight
    assert torch.allclose(ref_weights, initial + 0.01)       # the reference is this round's SFT model
    assert ctx.stats["pairs_per_round"] == [6, 6] and ctx.stats["seconds_per_epoch"] > 0
    assert isinstance(model, LlamaForCausalLM)


def test_causaldpo_selfplay_is_causaldpo_then_self_play_rounds_with_the_regularizer():
    ctx, events, refs, completions = stub_context()
    ctx.preference.max_pairs = None
    method = resolve("causaldpo-selfplay", {"iterations": 3, "pairs_per_iteration": 8})
    assert method.causal and method.config.mmd_weight == 1.0
    model = method.fit(ctx)
    kinds = [e[0] for e in events]
    # round 1 = causaldpo: random negatives, reference = the SFT model; then two SPRec rounds
    assert kinds == ["reference"] + ["generate", "sft", "reference"] * 2
    assert events[0][1] == "sft" and len({e[1] for e in events if e[0] == "reference"}) == 3
    assert ctx.stats["self_play_pairs_per_round"] == [6, 6]
    assert "mean_envs" in ctx.stats and ctx.stats["train_seconds_per_epoch"] > 0  # round 1: causaldpo stats
    assert all(r == [completions[10]] for r in refs[1][0].rejected)         # self-play negatives from round 2 on
    assert len(ctx.stats["projection"]["xy"]) == 8                          # the final model's projection
    assert isinstance(model, LlamaForCausalLM)


def test_rounds_share_the_preference_budget_and_draw_until_their_pairs_are_found():
    ctx, events, refs, completions = stub_context()
    ctx.preference.max_pairs = 6
    method = resolve("sprec", {"iterations": 2})                      # 6 pairs shared by 2 rounds: 3 each
    method.fit(ctx)
    # the stub always predicts item 10; targets 10 give no pair, so a round draws on until it has 3 pairs
    generated = [n for kind, n in events if kind == "generate"]
    sft = [n for kind, n in events if kind == "sft"]
    assert ctx.stats["pairs_per_round"] == [3, 3] and ctx.stats["pairs"] == 6
    assert all(3 <= n <= 5 for n in sft) and sum(generated) == sum(sft)  # the SFT step trains on what was drawn
    assert len(refs[0][0]) == 3 and all(r == [completions[10]] for r in refs[0][0].rejected)
    assert ctx.stats["optimizer_steps"] == 2                          # one step of 3 pairs (batch 4) per round


def test_causaldpo_selfplay_rounds_share_the_budget_of_causaldpo():
    ctx, _, refs, _ = stub_context()
    ctx.preference.max_pairs = 6
    method = resolve("causaldpo-selfplay", {"iterations": 3})
    method.fit(ctx)
    assert [len(pairs) for pairs, _ in refs] == [2, 2, 2]             # round 1 (random negatives) included
    assert ctx.stats["pairs"] == 6 and ctx.stats["optimizer_steps"] == 3
