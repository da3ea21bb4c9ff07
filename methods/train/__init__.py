"""Training machinery every LLM method is made of: SFT (TRL's `SFTTrainer`, completion-only loss, cached per cell),
the one preference trainer (chosen + K rejected in one forward, reference log-probs cached), the sequence helpers
they share with ranking, their configs, and the data-parallel helpers (`accelerate launch`)."""
