"""Figure 2 (right): the representation projection coloured by pseudo-environments (methods/projection.py), and the
trainable projection g it shows: the regularizer's MMD penalty trains g through the soft assignments."""
import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_mutual_info_score
from transformers import LlamaConfig, LlamaForCausalLM

from methods.causal import CausalConfig, CausalRegularizer, dbscan_labels
from methods.projection import environment_projection, prompt_representations


def tiny_model():
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                        num_key_value_heads=2, intermediate_size=32, pad_token_id=0)).eval()


def prompts(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return [[1] + rng.integers(3, 40, int(rng.integers(3, 12))).tolist() for _ in range(n)]


def test_left_padded_representation_is_the_last_prompt_token_of_an_unpadded_forward():
    model, rows = tiny_model(), prompts(9)
    batched = prompt_representations(model, rows, pad_id=0, device="cpu", batch_size=4)
    for row, got in zip(rows, batched):
        with torch.no_grad():
            alone = model(input_ids=torch.tensor([row]), output_hidden_states=True).hidden_states[-1][0, -1]
        assert torch.allclose(got, alone, atol=1e-5)


def test_projection_clusters_g_of_h_with_the_training_rule_and_reports_ami():
    model, rows = tiny_model(), prompts()
    torch.manual_seed(1)
    reg = CausalRegularizer(16, CausalConfig(projection_dim=8))
    groups = np.arange(len(rows)) % 5
    periods = np.arange(len(rows)) // 12
    out = environment_projection(model, reg, rows, groups, periods, pad_id=0, device="cpu")
    with torch.no_grad():
        z = torch.nn.functional.normalize(reg.g(prompt_representations(model, rows, 0, "cpu")), dim=-1).numpy()
    envs = dbscan_labels(z, 3, 0.5)
    assert out["environment"] == envs.tolist()
    assert np.asarray(out["xy"]).shape == (len(rows), 2)
    assert out["popularity_group"] == (groups + 1).tolist() and out["time_period"] == (periods + 1).tolist()
    kept = envs >= 0
    assert out["environments"] == len(set(envs[kept])) and out["noise_fraction"] == 1 - kept.mean()
    assert out["ami_popularity"] == adjusted_mutual_info_score(groups[kept], envs[kept])
    # the 2-D points are PCA of z: their pairwise distances never exceed those of z
    xy = np.asarray(out["xy"])
    d_xy = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    d_z = np.linalg.norm(z[:, None] - z[None], axis=-1)
    assert (d_xy <= d_z + 1e-3).all()


@pytest.mark.parametrize("assignment_grad", [True, False])
def test_the_mmd_penalty_gives_the_projection_a_non_zero_gradient(assignment_grad):
    """g reaches the penalty only through the centres and soft assignments: a non-zero gradient with
    `assignment_grad`, none when they are detached (the check can tell the two apart)."""
    h = prompt_representations(tiny_model(), prompts(16), 0, "cpu").clone()   # out of inference mode
    torch.manual_seed(0)
    reg = CausalRegularizer(16, CausalConfig(projection_dim=8, assignment_grad=assignment_grad))
    reward = torch.linspace(-1.0, 1.0, 16)                                    # fixed: no other path to the penalty
    _, penalty, stats = reg(torch.rand(16), h, reward, torch.zeros(16, 16))
    assert stats["causal/envs"] >= 2 and penalty.item() > 0
    if assignment_grad:
        penalty.backward()
        assert reg.g.weight.grad.norm() > 1e-3 and torch.isfinite(reg.g.weight.grad).all()
    else:
        assert not penalty.requires_grad
