"""Engines run scorers over examples: `local` in this process, batch by batch, resumable."""
