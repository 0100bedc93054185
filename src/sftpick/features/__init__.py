"""Features: one vector per record, for the selectors that compare records.

- warmup.py: LESS step 1, a short LoRA warmup whose checkpoints keep the LoRA weights, the
  Adam state by parameter name and each epoch's mean learning rate
- gradients.py: LESS step 2, per-example gradients (batched with torch.func), Adam
  preconditioning, a block-generated Rademacher projection, L2 normalisation
"""
