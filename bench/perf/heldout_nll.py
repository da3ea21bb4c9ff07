"""Has an SFT model learnt more than the catalogue's popularity? `python -m bench.perf.heldout_nll`.

For the first N samples of each part (training samples and the test parts), the SFT model's negative
log-likelihood of the true next title given the prompt, in nats per title (teacher-forced, the title's tokens and its
end-of-answer tokens, as SFT's loss counts them), against two references that know nothing of the user: the
training part's popularity (each item's share of training interactions, add-one smoothed over the catalogue) and
the uniform distribution over the catalogue. A model whose NLL is not below the popularity's has not learnt the
user, whatever its ranking metrics; one above the uniform's still spends probability outside the catalogue (the
ranking protocols renormalise over titles, this number does not). A forward per sample: minutes where a likelihood
ranking of the same samples takes half an hour, so a recipe can be judged before it is ranked.

    python -m bench.perf.heldout_nll [--profile small] [--shift temporal] [--prompts 1000] [--cache DIR]
                                     [--set KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench.perf.sft_cell import add_cell_arguments, load_cell
from methods.train.sequences import completion_logps, left_padded


def title_nll(model, prompts: list[list[int]], completions: list[list[int]], pad_id: int,
              batch_size: int = 16) -> np.ndarray:
    """-log P(completion | prompt) of each row, teacher-forced, in nats."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            rows = slice(start, start + batch_size)
            logps, _, _ = completion_logps(model, *left_padded(prompts[rows], completions[rows], pad_id,
                                                               model.device))
            out.append(-logps.float().cpu().numpy())
    return np.concatenate(out)


def popularity_nll(train_counts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """-log of each target's add-one smoothed share of the training interactions (targets: catalogue positions)."""
    share = (train_counts + 1) / (train_counts.sum() + len(train_counts))
    return -np.log(share[targets])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cell_arguments(parser, "small", "iid_test", 1000)
    args = parser.parse_args(argv)
    cell = load_cell(args)
    cell.ensure_sft()
    model = cell.sft_model().eval()
    uniform = np.log(len(cell.items))
    parts = {"train": (cell.train_prompts, cell.train.targets)}
    parts.update({p: (cell.eval_prompts[p], s.targets) for p, s in cell.eval_parts.items()})
    print(f"SFT model {cell.sft_tag}; nats per title (uniform over the catalogue: {uniform:.3f})")
    print(f"{'part':<10} {'samples':>7} {'SFT':>7} {'popularity':>10} {'SFT < pop.':>10} {'s/sample':>8}")
    for part, (prompts, targets) in parts.items():
        prompts, targets = prompts[: args.prompts], np.asarray(targets[: args.prompts])
        start = time.perf_counter()
        nll = title_nll(model, prompts, [cell.completions[int(t)] for t in targets], cell.tokenizer.pad_token_id)
        seconds = (time.perf_counter() - start) / len(prompts)
        pop = popularity_nll(cell.train_counts, np.array([cell.position[int(t)] for t in targets]))
        print(f"{part:<10} {len(prompts):>7} {nll.mean():>7.3f} {pop.mean():>10.3f} {np.mean(nll < pop):>10.1%} "
              f"{seconds:>8.3f}")


if __name__ == "__main__":
    main()
