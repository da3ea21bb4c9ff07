"""Figure 2 (right) of the CausalDPO paper: a 2-D projection of the learned representations coloured by the
pseudo-environments the causal regularizer infers.

After training, the policy encodes a seeded sample of the preference prompts (the last-layer hidden state at the
last prompt token, the regularizer's h_i), the trained projection g maps them to z (L2-normalised as in training),
DBSCAN with the training rule (`methods.causal.dbscan_labels`: same min_samples and eps quantile) clusters the whole
sample at once, and PCA (scikit-learn) gives the 2-D coordinates. The paper does not say which projection it draws
or over which samples; training clusters batch by batch, whose labels are not comparable across batches, hence one
clustering of the sample. Each point also carries its target's popularity group (G1 head .. G5 tail, from the
training counts) and its time period (T1..T5 of the sample's timestamps), and the record keeps the adjusted mutual
information between the environments and each, so "environments follow popularity strata / time" is a number,
not an impression.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_mutual_info_score

from methods.causal import dbscan_labels
from methods.train.sequences import last_hidden_states, left_pad


@torch.inference_mode()
def prompt_representations(model, prompts: list[list[int]], pad_id: int, device, batch_size: int = 64) -> torch.Tensor:
    """(n, d) last-layer hidden states at each prompt's last token (left padding puts it in the last column)."""
    was_training = model.training
    model.eval()
    rows = []
    for start in range(0, len(prompts), batch_size):
        ids, mask = left_pad(prompts[start:start + batch_size], pad_id)
        positions = (mask.cumsum(1) - 1).clamp_min(0)
        hidden = last_hidden_states(model, ids.to(device), mask.to(device), positions.to(device))
        rows.append(hidden[:, -1].float().cpu())
    model.train(was_training)
    return torch.cat(rows)


def environment_projection(model, regularizer, prompts: list[list[int]], popularity_group: np.ndarray,
                           time_period: np.ndarray | None, pad_id: int, device) -> dict:
    """The record's `projection`: 2-D points, pseudo-environment per point (-1 = DBSCAN noise), popularity group
    and time period per point (1-based), and the adjusted mutual information of the environments with each."""
    hidden = prompt_representations(model, prompts, pad_id, device)
    with torch.inference_mode():
        z = regularizer.project(hidden.to(regularizer.g.weight.device, regularizer.g.weight.dtype)).float().cpu()
    z = z.numpy()
    envs = dbscan_labels(z, regularizer.config.min_samples, regularizer.config.eps_quantile)
    xy = PCA(n_components=2, random_state=0).fit_transform(z)
    clustered = envs >= 0
    out = {"xy": np.round(xy, 4).tolist(), "environment": envs.tolist(),
           "popularity_group": (popularity_group + 1).tolist(), "environments": int(len(set(envs[clustered]))),
           "noise_fraction": float(1 - clustered.mean()),
           "ami_popularity": float(adjusted_mutual_info_score(popularity_group[clustered], envs[clustered]))
           if clustered.any() else None}
    if time_period is not None:
        out["time_period"] = (time_period + 1).tolist()
        out["ami_time"] = (float(adjusted_mutual_info_score(time_period[clustered], envs[clustered]))
                           if clustered.any() else None)
    return out
