"""`sftpick` command line: parses, calls the API, prints with rich. Nothing else lives here."""
from __future__ import annotations

import functools
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text
from typer._click.exceptions import ClickException, NoArgsIsHelpError, NoSuchOption, UsageError  # vendored click

from . import api
from .console import make_console
from .engines import EngineError
from .errors import did_you_mean
from .examples import InvalidRecord, UnknownFormat
from .io import CHUNK_RECORDS, UnreadableInput, scan_dataset
from .writers import ORDERS, OutputLocked, atomic_write, sibling, write_subset
from .models import DEFAULT_EMBEDDER, DEFAULT_LM, ModelNotFoundError



console = make_console()
_debug = {"on": False}  # set by `sftpick --debug`: errors keep their traceback


def print_error(message: str) -> None:
    console.print(Text("error: ", style="bold red") + Text(message))


class _OneLineUsageErrors(typer.core.TyperGroup):
    """Usage errors (an unknown flag or config key, a bad value, a missing argument) print as
    one line with exit code 2, like sftpick's own errors, not in rich's box wrapped at the
    terminal's width: the full list of options is in `--help`."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as error:
            error.show()
            sys.exit(error.exit_code)
        except UsageError as error:
            print_error(_usage_message(error))
            sys.exit(2)
        except ClickException as error:
            print_error(" ".join(error.format_message().split()))
            sys.exit(error.exit_code)
        except typer.Abort:
            print_error("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _usage_message(error: UsageError) -> str:
    if isinstance(error, NoSuchOption) and error.ctx:
        flags = [flag for param in error.ctx.command.params for flag in param.opts]
        message = f"no such option {error.option_name}{did_you_mean(error.option_name, flags)}"
    else:
        message = " ".join(error.format_message().split())
    return message + (f" (see `{error.ctx.command_path} --help`)" if error.ctx else "")


app = typer.Typer(cls=_OneLineUsageErrors, add_completion=False, no_args_is_help=True,
                  help="Assess and select instruction-tuning (SFT) data.")


@app.callback()
def _options(debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of any error "
                                                "(for a bug report) instead of one line.")] = False):
    _debug["on"] = debug

Data = Annotated[Path, typer.Argument(help="Input records: .json (array), .jsonl or .parquet.")]
Format = Annotated[Optional[str], typer.Option("--format", help="alpaca | sharegpt | openai (default: detect).")]
Strict = Annotated[bool, typer.Option(help="Stop at the first bad record instead of rejecting it.")]
Scorers = Annotated[str, typer.Option(help="Comma-separated scorers.")]
Model = Annotated[str, typer.Option(help="Causal LM: embedded name, hub id, local folder or .gguf file.")]
Variant = Annotated[str, typer.Option(help="IFD variant: superfiltering | cherry.")]
Template = Annotated[Optional[str], typer.Option(help="Prompt template: none | alpaca | chat (default: by variant).")]
MaxLength = Annotated[Optional[int], typer.Option(help="Longest sequence scored, in tokens (default: 1024 for ifd, "
                                                      "2048 for the deita scorers).")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")]
Dtype = Annotated[str, typer.Option(help="auto (fp32 on CPU, bf16 on CUDA) | float32 | bfloat16 | float16.")]
TokenBudget = Annotated[Optional[int], typer.Option(help="Tokens per batch (default: 1024 CPU, 16384 CUDA).")]
Packing = Annotated[bool, typer.Option(help="IFD: each batch's sequences in one row without padding (for CUDA "
                                             "with flash-attention; slower on CPU, see benchmarks/README.md).")]
TrustRemoteCode = Annotated[bool, typer.Option(help="Allow model code from the hub to run (off by default).")]
Progress = Annotated[bool, typer.Option(help="Show a progress bar.")]
Workers = Annotated[int, typer.Option(help="Scoring processes (--engine ray: actors), each with its own model: on "
                                           "CUDA one per GPU; on one CPU one process using every thread was faster "
                                           "(benchmarks/README.md).")]
EngineName = Annotated[str, typer.Option("--engine", help="Where scorers run: local (this machine) or ray (a Ray "
                                                          "cluster; pip install 'sftpick\\[ray]').")]
GpusPerWorker = Annotated[float, typer.Option(help="GPUs per Ray worker (--engine ray); 0.5 puts two on one GPU.")]
RayAddress = Annotated[Optional[str], typer.Option(help="Ray cluster to join (--engine ray), e.g. ray://head:10001; "
                                                        "default: RAY_ADDRESS, else a local cluster for this run.")]
ChunkSize = Annotated[int, typer.Option(help="Records read and held in memory at a time (the unit of a "
                                              "saved part; scores, not records, are kept across parts).")]
Budget = Annotated[str, typer.Option(help="Records to keep: a count (2000), fraction (0.05) or percentage (5%).")]
By = Annotated[Optional[str], typer.Option(help="Score column to rank by (default: ifd when scored; a diversity "
                                                 "strategy without one chooses by coverage alone).")]
Ascending = Annotated[bool, typer.Option(help="Lower is better (default: higher is better).")]
MaxIfd = Annotated[Optional[float], typer.Option(help="Drop records with ifd >= this (default 1.0 when ranking by ifd).")]
MinIfd = Annotated[Optional[float], typer.Option(help="Drop records with ifd <= this: with --max-ifd, Superfiltering's "
                                                 "IFD band (its diversity script keeps 0.9 < ifd < 1.0).")]
Where = Annotated[Optional[list[str]], typer.Option(help="Keep records where COLUMN OP NUMBER holds, e.g. "
                                                    "\"judge>=4.5\" (repeatable; a missing value fails).")]
Order = Annotated[str, typer.Option(help="Order of the subset: input | pick (the strategy's pick order, best first).")]
Strategy = Annotated[str, typer.Option(help="Selection strategy: topk | kcenter | facility | clusters | deita | "
                                             "pre_experience | lift.")]
Pool = Annotated[Optional[str], typer.Option(help="Let the strategy choose among the best-ranked records only "
                                             "(count, fraction or %), e.g. --pool 20% --strategy kcenter.")]
Tau = Annotated[Optional[float], typer.Option(help="deita: keep a record only if its cosine similarity to every "
                                              "kept one is below this (default 0.9).")]
Clusters = Annotated[Optional[int], typer.Option(help="clusters: number of k-means clusters (default 100, or one per "
                                                     "10 records for a pool under 1,000).")]
Quota = Annotated[Optional[str], typer.Option(help="clusters: per-cluster quota, proportional | equal (default proportional).")]
Neighbors = Annotated[Optional[int], typer.Option(help="facility: nearest neighbours per record in the similarity graph (default 10).")]
Band = Annotated[Optional[tuple[float, float]], typer.Option(help="pre_experience: the percentiles of --by kept in "
                                                           "each cluster (default 25 75, Cherry LLM's).")]
Kernel = Annotated[Optional[str], typer.Option(help="facility: cosine (sparse k-NN graph, the default: scales) | euclidean "
                                               "(Superfiltering's dense submodlib objective, up to 10,000 records).")]
Seed = Annotated[Optional[int], typer.Option(help="clusters, facility: random seed of k-means (default 0).")]
Variety = Annotated[Optional[str], typer.Option(help="lift: records its variety stage keeps, those of highest "
                                             "row variance (count, fraction or %; default 20%, LIFT's); the budget "
                                             "is then the best of them by --by.")]
ExplainedVariance = Annotated[Optional[float], typer.Option(help="lift: share of the embeddings' variance its "
                                                            "principal components keep (default 0.95, LIFT's).")]
SeedSet = Annotated[Optional[Path], typer.Option(help="kcenter: records already chosen (an input file); "
                                                 "new picks start far from them.")]
RewardModel = Annotated[Optional[str], typer.Option(help="Reward model for `reward`: HF sequence classification, one output.")]
Embedder = Annotated[str, typer.Option(help="Sentence-transformers model for `knn_K`: all-minilm-l6-v2 (embedded), hub id or path.")]
EmbedText = Annotated[str, typer.Option(help="Text embedded for `knn_K`: whole | instruction.")]
KnnIndex = Annotated[str, typer.Option(help="kNN search: exact | hnsw | ivf (approximate; recall@k printed).")]
VectorsDtype = Annotated[str, typer.Option(help="How `knn_K`'s vectors are stored (cache and vectors file): "
                                           "float32 | float16 (half the space; searched in float32).")]
Offline = Annotated[bool, typer.Option(help="Never reach the network: hub models must be in the local cache "
                                             "(same as HF_HUB_OFFLINE=1).")]
DeitaComplexityModel = Annotated[str, typer.Option(help="Causal LM for `deita_complexity` and `deita`, e.g. "
                                                   "hkust-nlp/deita-complexity-scorer (default: the embedded stand-in).")]
DeitaQualityModel = Annotated[str, typer.Option(help="Causal LM for `deita_quality` and `deita`, e.g. "
                                                "hkust-nlp/deita-quality-scorer (default: the embedded stand-in).")]
RuleFile = Annotated[Optional[Path], typer.Option(help="Rule file (JSON) for `rule` (default: the paper's rule).")]
JudgeUrl = Annotated[Optional[str], typer.Option(help="`judge`: OpenAI base URL of the judge's server, e.g. http://127.0.0.1:8000/v1.")]
JudgeModel = Annotated[Optional[str], typer.Option(help="`judge`: the model name the server serves.")]
JudgePrompt = Annotated[Optional[str], typer.Option(help="`judge`: alpagasus (default: AlpaGasus's rating prompt) or a JSON prompt file.")]
JudgeKeyEnv = Annotated[Optional[str], typer.Option(help="`judge`: NAME of the environment variable holding the API key (never the key).")]
Concurrency = Annotated[Optional[int], typer.Option(help="`judge`: requests in flight at once (default 8).")]
JudgeRetries = Annotated[Optional[int], typer.Option(help="`judge`: retries of a request on 429/5xx/timeouts before the run stops (default 6).")]
JudgeTimeout = Annotated[Optional[float], typer.Option(help="`judge`: seconds to wait for one reply (default 60).")]
JudgeMaxTokens = Annotated[Optional[int], typer.Option(help="`judge`: max_tokens of a reply (default 32; the score is on its first line).")]


def _load_config(ctx: typer.Context, param: typer.CallbackParam, path: Optional[Path]) -> Optional[Path]:
    """`--config FILE` (TOML, option names as keys: `budget = "5%"`, `scorers = "ifd,len"`): its
    values become the command's defaults, so a flag on the command line still wins. Read
    before any other option (eager), and a key that is no option of the command is an error."""
    if path is None:
        return None
    import tomllib

    try:
        values = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise UsageError(f"{path}: {error}") from None
    known = {p.name for p in ctx.command.params if p.param_type_name == "option"} - {"config"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"{path}: {unknown[0]} is no option of {ctx.info_name}"
                               f"{did_you_mean(unknown[0], known)}")
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return path


Config = Annotated[Optional[Path], typer.Option(help="TOML file of this command's options (names as keys); "
                                                "flags given on the command line win.",
                                                is_eager=True, callback=_load_config)]


def _clean_errors(command):
    """Known failures become one line on stderr and exit code 2, not a traceback (`--debug`
    keeps it). `offline` (where the command has it) is put into the environment before
    anything loads."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        if kwargs.get("offline"):
            os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            return command(*args, **kwargs)
        except (UnreadableInput, UnknownFormat, InvalidRecord, ModelNotFoundError, OutputLocked, EngineError,
                ValueError, OSError) as error:  # OSError: a path that is missing, a file, unwritable…
            if _debug["on"]:
                raise
            print_error(str(error))
            raise typer.Exit(2) from None
    return wrapper


def _behind_proxy_check(proxy: str, check: int, min_agreement: float | None):
    """api.score, with the weak `proxy` model, once it agrees with --model on a sample."""
    from .proxy import score_with_proxy

    def show(checked) -> None:
        console.print(f"proxy check: {checked.weak} (weak) vs {checked.strong} (strong), "
                      f"{checked.sample} sampled records", highlight=False)
        console.print("\n".join(checked.agreement.lines()), highlight=False)

    def run_scoring(data, output, **options):
        return score_with_proxy(data, output, proxy=proxy, check=check, min_agreement=min_agreement,
                                on_check=show, **options)[0]
    return run_scoring


def _scorer_options(model, variant, template, max_length, device, dtype, token_budget, packing,
                    trust_remote_code) -> dict:
    return {"model": model, "variant": variant, "template": template, "max_length": max_length,
            "device": device, "dtype": dtype, "token_budget": token_budget, "packing": packing,
            "trust_remote_code": trust_remote_code}


def _judge_options(judge_url, judge_model, judge_prompt, judge_key_env, concurrency, judge_retries, judge_timeout,
                   judge_max_tokens) -> dict:
    return {"judge_url": judge_url, "judge_model": judge_model, "judge_prompt": judge_prompt,
            "judge_key_env": judge_key_env, "concurrency": concurrency, "judge_retries": judge_retries,
            "judge_timeout": judge_timeout, "judge_max_tokens": judge_max_tokens}


def _strategy_options(tau, clusters, quota, neighbors, kernel, band, seed, seed_set, variety,
                      explained_variance) -> dict:
    """The strategy options given; api.select says when one does not apply."""
    low, high = band or (None, None)
    given = {"tau": tau, "clusters": clusters, "quota": quota, "neighbors": neighbors, "kernel": kernel,
             "low_percentile": low, "high_percentile": high, "seed": seed, "seed_set": seed_set,
             "variety": variety, "explained_variance": explained_variance}
    return {key: value for key, value in given.items() if value is not None}


def _indicator_options(reward_model, embedder, embed_text, knn_index, rule_file, vectors_dtype=None) -> dict:
    return {"reward_model": reward_model, "embedder": embedder, "embed_text": embed_text, "knn_index": knn_index,
            "rule_file": str(rule_file) if rule_file else None, "vectors_dtype": vectors_dtype}


@app.command()
@_clean_errors
def score(data: Data, output: Annotated[Path, typer.Option("-o", "--output", help="Scores table (.parquet).")],
          scorers: Scorers = "ifd", model: Model = DEFAULT_LM, variant: Variant = "superfiltering",
          template: Template = None, max_length: MaxLength = None, device: Device = "auto",
          dtype: Dtype = "auto", token_budget: TokenBudget = None, packing: Packing = False, fmt: Format = None,
          strict: Strict = False, trust_remote_code: TrustRemoteCode = False, progress: Progress = True,
          rejects: Annotated[Optional[Path], typer.Option(help="Rejects file (default: beside the output).")] = None,
          reward_model: RewardModel = None, embedder: Embedder = DEFAULT_EMBEDDER, embed_text: EmbedText = "whole",
          knn_index: KnnIndex = "exact", rule_file: RuleFile = None, vectors_dtype: VectorsDtype = "float32",
          deita_complexity_model: DeitaComplexityModel = DEFAULT_LM, deita_quality_model: DeitaQualityModel = DEFAULT_LM,
          shard_size: Annotated[int, typer.Option(help="Records per saved shard (the unit of resume).")] = 64,
          workers: Workers = 1, engine: EngineName = "local", gpus_per_worker: GpusPerWorker = 0.0,
          ray_address: RayAddress = None, chunk_size: ChunkSize = CHUNK_RECORDS,
          proxy: Annotated[Optional[str], typer.Option(help="Weak model that scores everything once it agrees with --model on a sample.")] = None,
          check: Annotated[int, typer.Option(help="Records sampled (seed 0) for the --proxy check.")] = 500,
          min_agreement: Annotated[Optional[float], typer.Option(help="Stop when the proxy's Spearman rho on the sample is below this.")] = None,
          judge_url: JudgeUrl = None, judge_model: JudgeModel = None, judge_prompt: JudgePrompt = None,
          judge_key_env: JudgeKeyEnv = None, concurrency: Concurrency = None, judge_retries: JudgeRetries = None,
          judge_timeout: JudgeTimeout = None, judge_max_tokens: JudgeMaxTokens = None,
          offline: Offline = False, config: Config = None):
    """Score every record; write one row per scored record and a rejects file."""
    scoring = api.score if proxy is None else _behind_proxy_check(proxy, check, min_agreement)
    rejects = rejects or api.rejects_path(output)
    result = scoring(data, output, scorers=scorers.split(","), fmt=fmt, strict=strict, progress=progress,
                     shard_size=shard_size, workers=workers, rejects=rejects, engine=engine,
                     gpus_per_worker=gpus_per_worker, ray_address=ray_address, chunk_size=chunk_size,
                     **_scorer_options(model, variant, template, max_length, device, dtype,
                                       token_budget, packing, trust_remote_code),
                     **_indicator_options(reward_model, embedder, embed_text, knn_index, rule_file, vectors_dtype),
                     deita_complexity_model=deita_complexity_model, deita_quality_model=deita_quality_model,
                     **_judge_options(judge_url, judge_model, judge_prompt, judge_key_env, concurrency, judge_retries,
                                      judge_timeout, judge_max_tokens))
    _print_counts(result.counts, result.rejects)
    _print_judge(result.timings)
    console.print(f"scores: {output}\nrejects: {rejects}\nmanifest: {sibling(output, '.manifest.json')}")


@app.command()
@_clean_errors
def select(data: Data, scores: Annotated[Path, typer.Option(help="Scores table from `sftpick score`.")],
           output: Annotated[Path, typer.Option("-o", "--output", help="Subset, same format as the input.")],
           budget: Budget, by: By = None, ascending: Ascending = False, max_ifd: MaxIfd = None,
           min_ifd: MinIfd = None, where: Where = None, strategy: Strategy = "topk", fmt: Format = None,
           pool: Pool = None, tau: Tau = None, clusters: Clusters = None, quota: Quota = None,
           neighbors: Neighbors = None, kernel: Kernel = None, band: Band = None, seed: Seed = None,
           seed_set: SeedSet = None, variety: Variety = None, explained_variance: ExplainedVariance = None,
           order: Order = "input", config: Config = None):
    """Choose records by their scores and write them in the input's own format."""
    if order not in ORDERS:
        raise ValueError(f"order={order!r} is not one of {', '.join(ORDERS)}")
    dataset = scan_dataset(data, fmt)  # the records are read only if they must be matched by content
    selection = api.select(scores, budget, by=by, ascending=ascending, max_ifd=max_ifd, min_ifd=min_ifd,
                           where=where, strategy=strategy, pool=pool, data=dataset,
                           **_strategy_options(tau, clusters, quota, neighbors, kernel, band, seed, seed_set,
                                             variety, explained_variance))
    write_subset(dataset, selection.order, output, order=order)
    manifest = sibling(output, ".manifest.json")
    atomic_write(manifest, json.dumps(api.selection_manifest(dataset, scores, selection, output), indent=2,
                                      default=str))
    _print_selection(selection)
    console.print(f"subset: {output}\nmanifest: {manifest}")


@app.command()
@_clean_errors
def run(data: Data, output_dir: Annotated[Path, typer.Option("-o", "--output-dir", help="Folder for all outputs.")],
        budget: Budget = "5%", scorers: Scorers = "ifd", model: Model = DEFAULT_LM,
        variant: Variant = "superfiltering", template: Template = None, max_length: MaxLength = None,
        device: Device = "auto", dtype: Dtype = "auto", token_budget: TokenBudget = None,
        packing: Packing = False, by: By = None, ascending: Ascending = False, max_ifd: MaxIfd = None,
        min_ifd: MinIfd = None,
        where: Where = None, strategy: Strategy = "topk", pool: Pool = None, tau: Tau = None,
        clusters: Clusters = None, quota: Quota = None, neighbors: Neighbors = None, kernel: Kernel = None,
        band: Band = None, seed: Seed = None,
        seed_set: SeedSet = None, variety: Variety = None, explained_variance: ExplainedVariance = None,
        order: Order = "input",
        fmt: Format = None, strict: Strict = False, trust_remote_code: TrustRemoteCode = False,
        progress: Progress = True, reward_model: RewardModel = None, embedder: Embedder = DEFAULT_EMBEDDER,
        embed_text: EmbedText = "whole", knn_index: KnnIndex = "exact", rule_file: RuleFile = None,
        vectors_dtype: VectorsDtype = "float32",
        deita_complexity_model: DeitaComplexityModel = DEFAULT_LM, deita_quality_model: DeitaQualityModel = DEFAULT_LM,
        workers: Workers = 1, engine: EngineName = "local", gpus_per_worker: GpusPerWorker = 0.0,
        ray_address: RayAddress = None, chunk_size: ChunkSize = CHUNK_RECORDS, judge_url: JudgeUrl = None,
        judge_model: JudgeModel = None,
        judge_prompt: JudgePrompt = None, judge_key_env: JudgeKeyEnv = None, concurrency: Concurrency = None,
        judge_retries: JudgeRetries = None, judge_timeout: JudgeTimeout = None,
        judge_max_tokens: JudgeMaxTokens = None, offline: Offline = False, config: Config = None):
    """Score, select and write scores.parquet, selected.<ext>, rejects.jsonl, manifest.json and report.html."""
    scored, selection = api.run(
        data, output_dir, budget, scorers=scorers.split(","), fmt=fmt, strict=strict, progress=progress,
        workers=workers, engine=engine, gpus_per_worker=gpus_per_worker, ray_address=ray_address,
        chunk_size=chunk_size, by=by, ascending=ascending, max_ifd=max_ifd, min_ifd=min_ifd, where=where,
        strategy=strategy, pool=pool, order=order,
        strategy_options=_strategy_options(tau, clusters, quota, neighbors, kernel, band, seed, seed_set, variety,
                                           explained_variance),
        **_scorer_options(model, variant, template, max_length, device, dtype, token_budget, packing,
                          trust_remote_code),
        **_indicator_options(reward_model, embedder, embed_text, knn_index, rule_file, vectors_dtype),
        deita_complexity_model=deita_complexity_model, deita_quality_model=deita_quality_model,
        **_judge_options(judge_url, judge_model, judge_prompt, judge_key_env, concurrency, judge_retries,
                         judge_timeout, judge_max_tokens))
    _print_counts(scored.counts, scored.rejects)
    _print_judge(scored.timings)
    _print_selection(selection)
    console.print(f"outputs: {output_dir}/ (scores.parquet, selected{scored.dataset.path.suffix}, "
                  "rejects.jsonl, manifest.json, report.html)")


@app.command()
@_clean_errors
def compare(a: Annotated[Path, typer.Argument(help="First scores table (.parquet).")],
            b: Annotated[Path, typer.Argument(help="Second scores table (.parquet).")],
            column: Annotated[str, typer.Option(help="Score column to compare.")] = "ifd",
            ascending: Ascending = False,
            json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures as JSON.")] = None):
    """Rank agreement of two score tables: Spearman, Kendall, top 5/10/15% overlap."""
    from .compare import compare as compare_tables
    from .writers import atomic_write

    agreement = compare_tables(a, b, column=column, ascending=ascending)
    make_console(stderr=False).print("\n".join(agreement.lines()))
    if json_path:
        atomic_write(json_path, json.dumps(agreement.to_dict(), indent=2))
        console.print(f"json: {json_path}", highlight=False)


@app.command()
@_clean_errors
def report(output_dir: Annotated[Path, typer.Argument(help="Output folder of `sftpick run`.")]):
    """Rebuild OUTPUT_DIR/report.html from the run's scores, manifest and input."""
    from .report import build_report

    console.print(f"report: {build_report(output_dir)}", highlight=False)


@app.command()
@_clean_errors
def assess(data: Data, json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the report here.")] = None,
           indicators: Annotated[str, typer.Option(help="Extra scorers, comma-separated (e.g. ppl).")] = "",
           model: Model = DEFAULT_LM, reward_model: RewardModel = None, embedder: Embedder = DEFAULT_EMBEDDER,
           embed_text: EmbedText = "whole", knn_index: KnnIndex = "exact", rule_file: RuleFile = None,
           device: Device = "auto", fmt: Format = None, progress: Progress = True, offline: Offline = False):
    """Dataset-level indicators (mean, spread) and the Instruction Mining rule's loss estimate."""
    from .assess import assess as assess_data

    report = assess_data(data, indicators=[n for n in indicators.split(",") if n], fmt=fmt, progress=progress,
                         model=model, device=device,
                         **_indicator_options(reward_model, embedder, embed_text, knn_index, rule_file))
    _print_assessment(report)
    if json_path:
        atomic_write(json_path, json.dumps(report, indent=2, default=str))
        console.print(f"json: {json_path}", highlight=False)


ConfigFile = Annotated[Optional[Path], typer.Option("--config", help="Training settings (JSON: a config, or a manifest.json to rerun); flags override it.")]
Epochs = Annotated[Optional[float], typer.Option(help="Epochs (default 3).")]
Lr = Annotated[Optional[float], typer.Option(help="Peak learning rate (default 2e-5; ~2e-4 suits LoRA).")]
BatchSize = Annotated[Optional[int], typer.Option(help="Records per optimizer step (default 16).")]
TrainMaxLength = Annotated[Optional[int], typer.Option("--max-length", help="Longest training/eval sequence in tokens (default 1024).")]
TrainSeed = Annotated[Optional[int], typer.Option("--seed", help="Training seed (default 0).")]
LoraRank = Annotated[Optional[int], typer.Option(help="Train LoRA adapters of this rank (peft) instead of all weights.")]
TrainTemplate = Annotated[Optional[str], typer.Option("--template", help="Prompt template: none | alpaca | chat (default alpaca).")]
MaxSteps = Annotated[Optional[int], typer.Option(help="Stop each fine-tune after this many optimizer steps (quick checks).")]


@app.command("eval")
@_clean_errors
def eval_command(
        output_dir: Annotated[Path, typer.Option("-o", "--output-dir", help="Folder for result.json, result.html, manifest.json, arms/.")],
        eval_set: Annotated[list[Path], typer.Option(help="Held-out records (any supported format); repeat for several, reported apart.")],
        train: Annotated[Optional[list[Path]], typer.Option(help="A training file (e.g. a selected subset): one arm each; repeatable.")] = None,
        baseline: Annotated[Optional[list[str]], typer.Option(help="random | longest | full, drawn from --pool; repeatable.")] = None,
        pool: Annotated[Optional[Path], typer.Option(help="Records the baselines are drawn from.")] = None,
        seeds: Annotated[int, typer.Option(help="Fine-tunes per arm (seeds --seed, --seed+1, …); random draws a new subset per seed.")] = 1,
        fixed_seeds: Annotated[Optional[int], typer.Option(help="Fine-tunes of the arms whose records do not change with the seed (--train files, longest, full); default: --seeds.")] = None,
        size: Annotated[Optional[str], typer.Option(help="Size of the random/longest baselines (count, fraction or % of the pool; default: the first --train file's).")] = None,
        config: ConfigFile = None, epochs: Epochs = None, lr: Lr = None, batch_size: BatchSize = None,
        max_length: TrainMaxLength = None, seed: TrainSeed = None, lora_rank: LoraRank = None,
        template: TrainTemplate = None, max_steps: MaxSteps = None,
        model: Model = DEFAULT_LM, device: Device = "auto",
        allow_overlap: Annotated[bool, typer.Option(help="Evaluate even when eval records are also training records.")] = False,
        save_models: Annotated[bool, typer.Option(help="Keep every tuned model under OUTPUT_DIR/models/<key>/ (off: results only).")] = False,
        fmt: Format = None, trust_remote_code: TrustRemoteCode = False, progress: Progress = True):
    """Fine-tune on each subset and on baselines; compare held-out loss (base model included)."""
    from .train.finetune import train_config
    from .train.summary import format_diff

    settings = train_config(config, epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length, seed=seed,
                            lora_rank=lora_rank, template=template, max_steps=max_steps)
    result = api.evaluate(train or [], output_dir, eval_sets=eval_set, baselines=baseline or [], pool=pool,
                          seeds=seeds, fixed_seeds=fixed_seeds, size=size, config=settings, model=model, device=device,
                          allow_overlap=allow_overlap, save_models=save_models, progress=progress, fmt=fmt,
                          trust_remote_code=trust_remote_code)
    _print_evaluation(result, format_diff)
    console.print(f"outputs: {output_dir}/ (result.json, result.html, manifest.json, arms/)", highlight=False)


def _print_evaluation(result: dict, format_diff) -> None:
    sets = list(result["base"]["eval_loss"])
    table = Table(title="held-out loss (mean response-token cross-entropy; lower is better)")
    table.add_column("arm", no_wrap=True)
    for column in ("kind", "seeds", "records", "response tokens"):
        table.add_column(column)
    for s in sets:
        table.add_column(f"{s}: loss")
        table.add_column(f"{s}: vs random (95% CI)")
    table.add_row("base model", "", "", "", "", *(x for s in sets for x in (f"{result['base']['eval_loss'][s]:.4f}", "")))
    for row in result["summary"]:
        table.add_row(row["name"], row["kind"], str(row["seeds"]), f"{row['n_records']:,.0f}",
                      f"{row['n_response_tokens']:,.0f}",
                      *(x for s in sets for x in (f"{row['eval'][s]['mean']:.4f}", format_diff(row["eval"][s]))))
    make_console(stderr=False).print(table)
    console.print("An arm with more response tokens trains on more tokens: compare losses with that in mind.",
                  highlight=False)


rule_app = typer.Typer(no_args_is_help=True, help="Instruction Mining rules: fit one from experiments.")
app.add_typer(rule_app, name="rule")


@rule_app.command("fit")
@_clean_errors
def rule_fit(experiments: Annotated[Path, typer.Argument(help="CSV: one row per tuned dataset, its indicator means and eval loss.")],
             target: Annotated[str, typer.Option(help="Column with the eval loss.")] = "loss",
             indicators: Annotated[str, typer.Option(help="Indicator columns, comma-separated (default: every other numeric column).")] = "",
             log: Annotated[bool, typer.Option(help="Fit log(target), as the paper does.")] = True,
             output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write the fitted rule file (JSON).")] = None):
    """Least squares of (log) eval loss on indicator means: coefficients, R², p-values."""
    from .scorers.rule import fit_rule

    fit = fit_rule(experiments, target, indicators=[n for n in indicators.split(",") if n] or None, log_target=log)
    table = Table(title=f"{fit.rule.target} ~ indicators ({fit.n_experiments} experiments)")
    for column in ("term", "coefficient", "std err", "p-value"):
        table.add_column(column)
    for term, value in [("intercept", fit.rule.intercept), *((t.column, t.coefficient) for t in fit.rule.terms)]:
        table.add_row(term, f"{value:.6g}", f"{fit.std_errors[term]:.3g}", f"{fit.p_values[term]:.3g}")
    console.print(table)
    console.print(f"R² = {fit.r_squared:.4f}, adjusted R² = {fit.adj_r_squared:.4f}", highlight=False)
    if output:
        atomic_write(output, json.dumps(fit.rule.to_dict(), indent=2))
        console.print(f"rule file: {output} (use with --rule-file)", highlight=False)


@rule_app.command("experiments")
@_clean_errors
def rule_experiments(
        pools: Annotated[list[Path], typer.Argument(help="Pool files; each is a source the datasets mix.")],
        output: Annotated[Path, typer.Option("-o", "--output", help="Experiments CSV (input of `rule fit`); its runs go to <stem>.runs/.")],
        eval_set: Annotated[Path, typer.Option(help="Held-out records whose loss is the target.")],
        datasets: Annotated[int, typer.Option(help="Training sets to draw, fine-tune and evaluate.")] = 24,
        min_size: Annotated[int, typer.Option(help="Smallest drawn dataset (records).")] = 200,
        max_size: Annotated[int, typer.Option(help="Largest drawn dataset (records).")] = 1000,
        draw_seed: Annotated[int, typer.Option(help="Seed of the draws (dataset i uses default_rng([seed, i])).")] = 0,
        config: ConfigFile = None, epochs: Epochs = None, lr: Lr = None, batch_size: BatchSize = None,
        max_length: TrainMaxLength = None, seed: TrainSeed = None, lora_rank: LoraRank = None,
        template: TrainTemplate = None, max_steps: MaxSteps = None,
        model: Model = DEFAULT_LM, device: Device = "auto", reward_model: RewardModel = None,
        embedder: Embedder = DEFAULT_EMBEDDER, embed_text: EmbedText = "whole", knn_index: KnnIndex = "exact",
        indicators: Annotated[str, typer.Option(help="Extra indicator scorers, comma-separated (e.g. ppl).")] = "",
        fmt: Format = None, trust_remote_code: TrustRemoteCode = False, progress: Progress = True):
    """Instruction Mining's experiments: draw datasets from the pools, fine-tune and evaluate each, write the CSV."""
    from .train.finetune import train_config

    settings = train_config(config, epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length, seed=seed,
                            lora_rank=lora_rank, template=template, max_steps=max_steps)
    rows = api.rule_experiments(pools, output, eval_set=eval_set, datasets=datasets, min_size=min_size,
                                max_size=max_size, seed=draw_seed, config=settings, model=model, device=device,
                                indicators=[n for n in indicators.split(",") if n], progress=progress, fmt=fmt,
                                trust_remote_code=trust_remote_code,
                                **_indicator_options(reward_model, embedder, embed_text, knn_index, None))
    console.print(f"experiments: {output} ({len(rows)} datasets; fit with `sftpick rule fit {output}`)",
                  highlight=False)


@app.command()
def demo(output_dir: Annotated[Path, typer.Option("-o", "--output-dir")] = Path("out"),
         budget: Budget = "10%", device: Device = "auto"):
    """Run the whole job on the bundled sample (real Alpaca records) with the embedded model."""
    from .data import sample_path

    console.print(f"sample data: {sample_path()}")
    run(sample_path(), output_dir, budget=budget, device=device)


def _print_counts(counts: dict, rejects: list) -> None:
    table = Table(title="records", show_header=False)
    for key in ("input", "scored", "rejected"):
        table.add_row(key, str(counts[key]))
    for reason, n in Counter(api.reason_kind(r.reason) for r in rejects).most_common():
        table.add_row(f"  rejected: {reason}", str(n))
    console.print(table)


def _print_judge(timings: dict) -> None:
    """The judge's ratings by value and its retries, so a collapsed judge is seen at once."""
    stats = timings.get("judge")
    if not stats:
        return
    ratings = ", ".join(f"{value}: {n}" for value, n in stats["ratings_now"].items()) or "none"
    console.print(f"judge: {stats['requests']} requests, {stats['retries']} retries; ratings made now by value: "
                  f"{ratings}; rejected now: {stats['rejected_now']}; from the journal: {stats['from_journal']}",
                  highlight=False)
    if stats.get("note"):
        console.print(Text("note: ", style="yellow") + Text(stats["note"]))


def _print_selection(selection: api.Selection) -> None:
    for reason, n in selection.dropped.items():
        console.print(f"dropped before ranking: {n} ({reason})", highlight=False)
    console.print(f"selected: {len(selection.rows)} of {selection.requested} asked for", highlight=False)
    for note in selection.notes:
        console.print(Text("note: ", style="yellow") + Text(note))
    if selection.stats:
        console.print("strategy: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                               for k, v in selection.stats.items()), highlight=False)


def _print_assessment(report: dict) -> None:
    table = Table(title=f"indicators of {report['input']} ({report['counts']['scored']} records scored)")
    for column in ("indicator", "n", "mean", "std", "p10", "median", "p90"):
        table.add_column(column)
    for name, stats in report["indicators"].items():
        if stats.get("missing"):
            table.add_row(name, Text("missing", style="yellow"), stats["reason"])
        else:
            table.add_row(name, str(stats["n"]), *(f"{stats[k]:.4g}" for k in ("mean", "std", "p10", "median", "p90")))
    console.print(table)
    rule = report["rule"]
    if rule["estimate"] is None:
        console.print(f"rule estimate ({rule['target']}): missing, no value for "
                      f"{', '.join(rule['missing'])}", highlight=False)
    else:
        console.print(f"rule estimate ({rule['target']}): {rule['estimate']:.4f}", highlight=False)


def main() -> None:
    app(prog_name="sftpick")  # also under `python -m sftpick.cli`


if __name__ == "__main__":
    main()
