import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def real_records_path() -> Path:
    """26 real Alpaca-format records (Alpaca, GSM8K, GPTeacher); see fixtures/LICENSES.md."""
    return FIXTURES / "real_alpaca.json"


@pytest.fixture(scope="session")
def real_dataset(real_records_path):
    from sftpick.io import read_dataset

    return read_dataset(real_records_path)


@pytest.fixture(scope="session")
def ifd_scorer():
    """The embedded SmolLM2-135M, superfiltering variant, on CPU (loaded once per session)."""
    from sftpick.scorers.ifd import IFDScorer

    scorer = IFDScorer(device="cpu")
    scorer.setup()
    return scorer


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of per-example gradient and fine-tune tests: their small
    batches run no faster on two, and two threads slow anything else running beside them."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
