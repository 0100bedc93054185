"""`sftpick` command line: parses, calls the API, prints with rich. Nothing else lives here."""
from __future__ import annotations

import functools
import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from . import api
from .examples import InvalidRecord, UnknownFormat
from .io import UnreadableInput, read_dataset, write_rejects, write_subset
from .models import DEFAULT_LM, ModelNotFoundError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Assess and select instruction-tuning (SFT) data.")
console = Console(stderr=True)

Data = Annotated[Path, typer.Argument(help="Input records: .json (array), .jsonl or .parquet.")]
Format = Annotated[Optional[str], typer.Option("--format", help="alpaca | sharegpt | openai (default: detect).")]
Strict = Annotated[bool, typer.Option(help="Stop at the first bad record instead of rejecting it.")]
Scorers = Annotated[str, typer.Option(help="Comma-separated scorers.")]
Model = Annotated[str, typer.Option(help="Causal LM: embedded name, hub id, local folder or .gguf file.")]
Variant = Annotated[str, typer.Option(help="IFD variant: superfiltering | cherry.")]
Template = Annotated[Optional[str], typer.Option(help="Prompt template: none | alpaca | chat (default: by variant).")]
MaxLength = Annotated[int, typer.Option(help="Longest sequence scored, in tokens.")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")]
Dtype = Annotated[str, typer.Option(help="auto (fp32 on CPU, bf16 on CUDA) | float32 | bfloat16 | float16.")]
TokenBudget = Annotated[Optional[int], typer.Option(help="Tokens per batch (default: 1024 CPU, 16384 CUDA).")]
TrustRemoteCode = Annotated[bool, typer.Option(help="Allow model code from the hub to run (off by default).")]
Progress = Annotated[bool, typer.Option(help="Show a progress bar.")]
Budget = Annotated[str, typer.Option(help="Records to keep: a count (2000), fraction (0.05) or percentage (5%).")]
By = Annotated[str, typer.Option(help="Score column to rank by.")]
Ascending = Annotated[bool, typer.Option(help="Lower is better (default: higher is better).")]
MaxIfd = Annotated[Optional[float], typer.Option(help="Drop records with ifd >= this (default 1.0 when ranking by ifd).")]
Strategy = Annotated[str, typer.Option(help="Selection strategy.")]


def _clean_errors(command):
    """Known failures become one line on stderr and exit code 2, not a traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (UnreadableInput, UnknownFormat, InvalidRecord, ModelNotFoundError, ValueError,
                FileNotFoundError) as error:
            console.print(f"[bold red]error:[/] {error}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None
    return wrapper


def _scorer_options(model, variant, template, max_length, device, dtype, token_budget, trust_remote_code) -> dict:
    return {"model": model, "variant": variant, "template": template, "max_length": max_length,
            "device": device, "dtype": dtype, "token_budget": token_budget,
            "trust_remote_code": trust_remote_code}


@app.command()
@_clean_errors
def score(data: Data, output: Annotated[Path, typer.Option("-o", "--output", help="Scores table (.parquet).")],
          scorers: Scorers = "ifd", model: Model = DEFAULT_LM, variant: Variant = "superfiltering",
          template: Template = None, max_length: MaxLength = 1024, device: Device = "auto",
          dtype: Dtype = "auto", token_budget: TokenBudget = None, fmt: Format = None,
          strict: Strict = False, trust_remote_code: TrustRemoteCode = False, progress: Progress = True,
          rejects: Annotated[Optional[Path], typer.Option(help="Rejects file (default: beside the output).")] = None):
    """Score every record; write one row per scored record and a rejects file."""
    result = api.score(data, output, scorers=scorers.split(","), fmt=fmt, strict=strict, progress=progress,
                       **_scorer_options(model, variant, template, max_length, device, dtype,
                                         token_budget, trust_remote_code))
    rejects = rejects or output.with_name(output.stem + ".rejects.jsonl")
    write_rejects(result.rejects, rejects)
    _print_counts(result.counts, result.rejects)
    console.print(f"scores: {output}\nrejects: {rejects}")


@app.command()
@_clean_errors
def select(data: Data, scores: Annotated[Path, typer.Option(help="Scores table from `sftpick score`.")],
           output: Annotated[Path, typer.Option("-o", "--output", help="Subset, same format as the input.")],
           budget: Budget, by: By = "ifd", ascending: Ascending = False, max_ifd: MaxIfd = None,
           strategy: Strategy = "topk", fmt: Format = None):
    """Choose records by their scores and write them in the input's own format."""
    dataset = read_dataset(data, fmt)
    selection = api.select(scores, budget, by=by, ascending=ascending, max_ifd=max_ifd, strategy=strategy)
    write_subset(dataset, selection.rows, output)
    _print_selection(selection)
    console.print(f"subset: {output}")


@app.command()
@_clean_errors
def run(data: Data, output_dir: Annotated[Path, typer.Option("-o", "--output-dir", help="Folder for all outputs.")],
        budget: Budget = "5%", scorers: Scorers = "ifd", model: Model = DEFAULT_LM,
        variant: Variant = "superfiltering", template: Template = None, max_length: MaxLength = 1024,
        device: Device = "auto", dtype: Dtype = "auto", token_budget: TokenBudget = None,
        by: By = "ifd", ascending: Ascending = False, max_ifd: MaxIfd = None, strategy: Strategy = "topk",
        fmt: Format = None, strict: Strict = False, trust_remote_code: TrustRemoteCode = False,
        progress: Progress = True):
    """Score, select and write scores.parquet, selected.<ext>, rejects.jsonl and manifest.json."""
    scored, selection = api.run(
        data, output_dir, budget, scorers=scorers.split(","), fmt=fmt, strict=strict, progress=progress,
        by=by, ascending=ascending, max_ifd=max_ifd, strategy=strategy,
        **_scorer_options(model, variant, template, max_length, device, dtype, token_budget, trust_remote_code))
    _print_counts(scored.counts, scored.rejects)
    _print_selection(selection)
    console.print(f"outputs: {output_dir}/ (scores.parquet, selected{scored.dataset.path.suffix}, "
                  "rejects.jsonl, manifest.json)")


@app.command()
@_clean_errors
def compare(a: Annotated[Path, typer.Argument(help="First scores table (.parquet).")],
            b: Annotated[Path, typer.Argument(help="Second scores table (.parquet).")],
            column: Annotated[str, typer.Option(help="Score column to compare.")] = "ifd",
            ascending: Ascending = False,
            json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures as JSON.")] = None):
    """Rank agreement of two score tables: Spearman, Kendall, top 5/10/15% overlap."""
    from .compare import compare as compare_tables
    from .io import atomic_write

    agreement = compare_tables(a, b, column=column, ascending=ascending)
    Console().print("\n".join(agreement.lines()), highlight=False)
    if json_path:
        atomic_write(json_path, json.dumps(agreement.to_dict(), indent=2))
        console.print(f"json: {json_path}", highlight=False)


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


def _print_selection(selection: api.Selection) -> None:
    for reason, n in selection.dropped.items():
        console.print(f"dropped before ranking: {n} ({reason})", highlight=False)
    console.print(f"selected: {len(selection.rows)} of {selection.requested} asked for", highlight=False)
    for note in selection.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
