"""A small real sample shipped with the package, for the demo and the quick start."""
from importlib.resources import files
from pathlib import Path


def sample_path() -> Path:
    """120 Alpaca-format records: 80 from Cherry LLM's 5% of Stanford Alpaca, 20 GSM8K
    train problems and 20 GPTeacher role-play records (licenses in data/LICENSES.md)."""
    return Path(str(files(__package__).joinpath("sample_alpaca.jsonl")))
