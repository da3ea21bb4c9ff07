"""Figure 2 (right): the representation projection coloured by pseudo-environments (methods/projection.py), and the
trainable projection g it shows: the regularizer's MMD penalty trains g through the soft assignments."""
import numpy as np
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


def penalty_gradients(assignment: str):
    """(g's gradient, the prompt representation's gradient) of the MMD penalty, the reward held fixed so that the
    assignments are the penalty's only path to g and to h."""
    h = prompt_representations(tiny_model(), prompts(16), 0, "cpu").clone().requires_grad_(True)
    torch.manual_seed(0)
    reg = CausalRegularizer(16, CausalConfig(projection_dim=8, assignment=assignment))
    reward = torch.linspace(-1.0, 1.0, 16)
    _, penalty, stats = reg(torch.rand(16), h, reward, torch.zeros(16, 16))
    assert stats["causal/envs"] >= 2 and penalty.item() > 0
    assert 0 < stats["causal/assignment_entropy"] < 1 and 1 < stats["causal/effective_envs"] <= stats["causal/envs"]
    if not penalty.requires_grad:
        return None, None
    penalty.backward()
    return reg.g.weight.grad, h.grad


def test_joint_assignments_let_g_and_the_policy_descend_the_mmd():
    g_grad, h_grad = penalty_gradients("joint")
    assert g_grad.norm() > 1e-3 and torch.isfinite(g_grad).all() and h_grad.norm() > 0


def test_detached_assignments_carry_no_gradient():
    assert penalty_gradients("detached") == (None, None)


def test_adversarial_assignments_make_g_ascend_the_mmd_and_spare_the_policy():
    joint, _ = penalty_gradients("joint")
    adversarial, h_grad = penalty_gradients("adversarial")
    torch.testing.assert_close(adversarial, -joint)                  # same step, the opposite direction
    assert h_grad is None or h_grad.abs().max() == 0                 # no path to the policy through p
