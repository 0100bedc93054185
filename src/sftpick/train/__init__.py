"""The evaluation loop: fine-tune on a subset and on baselines, compare held-out loss
(`loop`), and Instruction Mining's experiments that the quality rule is fitted to
(`experiments`). Needs only transformers (and peft for LoRA)."""
