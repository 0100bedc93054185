"""A tiny BertForSequenceClassification reward model (num_labels=1), built and saved by the
tests themselves (no reward model ships offline), with the real BERT tokenizer files of the
embedded all-MiniLM-L6-v2."""
from __future__ import annotations

import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def build_tiny_reward_model(folder: Path, *, num_labels: int = 1, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from sftpick.models import embedded_embedder_path

    source = embedded_embedder_path()
    vocab_size = sum(1 for _ in open(source / "vocab.txt", encoding="utf-8"))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=num_labels)
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, folder / name)
    return folder
