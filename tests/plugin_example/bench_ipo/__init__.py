"""IPO (Azar et al., 2023, arXiv 2310.12036) for dpo-shift-bench, from outside the benchmark: `loss` is the formula,
`plugin` registers it (the loss and the `ipo` method) when the harness loads the package."""
