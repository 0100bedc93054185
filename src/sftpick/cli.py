"""`sftpick` command line. Every command that takes options is generated from their
declarations (options.py): a command is a list of settings classes plus the registries whose
components' options it takes (`COMMANDS`), so a new scorer or strategy gets its flags and
config keys with no edit here. This module parses, calls the API and prints; it names no
method."""
from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import typing
from collections import Counter, defaultdict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.table import Table
from rich.text import Text
from typer._click.exceptions import ClickException, NoArgsIsHelpError, NoSuchOption, UsageError  # vendored click

from .assess import AssessSettings
from .console import make_console
from .errors import SftpickError, did_you_mean
from .options import Option, declared, members, read_config
from .pipeline import RunSettings
from .proxy import ProxySettings
from .scorers import SCORERS
from .scoring import ScoreSettings
from .selection import SelectSettings, SubsetSettings
from .selectors import SELECTORS
from .study import StudySettings
from .train.api import EvalSettings, ExperimentSettings
from .train.config import TrainConfig

console = make_console()
_debug = {"on": False}  # set by `sftpick --debug`: errors keep their traceback
BUG_EXIT = 70  # EX_SOFTWARE: an error that is not the user's to mend


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
        flags = [flag for param in error.ctx.command.params for flag in param.opts if not param.hidden]
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


def _clean_errors(command):
    """A user's mistake (SftpickError) or the file system's (OSError: a missing path, a full
    disk) is one line on stderr with exit code 2; anything else is a bug and says so, with
    exit code 70. `--debug` keeps the traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (SftpickError, OSError) as error:
            if _debug["on"]:
                raise
            print_error(str(error))
            raise typer.Exit(2) from None
        except Exception as error:
            if _debug["on"]:
                raise
            print_error(f"a bug in sftpick: {type(error).__name__}: {error} (run `sftpick --debug …` again for "
                        "the traceback, and report it)")
            raise typer.Exit(BUG_EXIT) from None
    return wrapper


# ---------------------------------------------------------------- commands from declarations

@dataclass(frozen=True)
class Command:
    """A command's options: its settings classes, and the registries (kind -> name -> class)
    whose components' options it takes (each unscoped, `--max-length`, and scoped,
    `--ifd.max-length`, hidden from --help)."""

    settings: tuple[type, ...]
    components: dict[str, dict[str, type]] = field(default_factory=dict)
    offline: bool = False  # takes --offline


@dataclass(frozen=True)
class _Param:
    option: Option
    key: str  # the API keyword: NAME or OWNER.NAME
    component: bool  # None means "not given": the component's own default


def _cli_type(option: Option) -> Any:
    """The type typer parses a flag as: a union of several types (a budget: 2000, 0.05, 5%) as
    text, a comma-separated list as text; the API converts and checks."""
    allowed = [m for m in members(option.type) if m is not type(None)]
    kind = allowed[0] if len(allowed) == 1 else str
    origin = typing.get_origin(kind)
    if origin is list:
        kind = list[typing.get_args(kind)[0]] if option.spec.repeat or option.spec.argument else str
    elif origin is tuple and typing.get_args(kind)[-1] is Ellipsis:
        kind = str
    return kind


def _parameter(param: _Param, name: str, flags: tuple[str, ...], *, help: str, panel: str | None,
               hidden: bool = False) -> inspect.Parameter:
    option, kind = param.option, _cli_type(param.option)
    help = help.replace("[", "\\[")  # rich markup: a bracket in a help text is text
    if option.spec.argument:
        info = typer.Argument(help=help, show_default=False)
        default = inspect.Parameter.empty if option.required else option.default
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                 annotation=Annotated[kind, info])
    if kind is bool and flags:
        flags = tuple(f"{f}/--no-{f[2:]}" if f.startswith("--") and "/" not in f else f for f in flags)
    default = None if param.component or isinstance(option.default, list) else option.default
    if option.required:
        default = inspect.Parameter.empty
    info = typer.Option(*flags, help=help, rich_help_panel=panel, hidden=hidden,
                        show_default=not param.component and default is not None)
    annotation = kind if default is inspect.Parameter.empty else Optional[kind]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, info])


def _panel(cls: type, name: str) -> str:
    """The --help panel of an option: the settings class that declares it ("Engine", "Select")."""
    owner = next(c for c in cls.__mro__ if name in getattr(c, "__annotations__", {}))
    return owner.__name__.removesuffix("Settings").removesuffix("Config")


def _parameters(command: Command) -> tuple[list[inspect.Parameter], dict[str, _Param]]:
    params, meta, taken = [], {}, set()
    for cls in command.settings:
        for option in declared(cls):
            if option.spec.cli and option.name not in taken:
                taken.add(option.name)
                meta[option.name] = _Param(option, option.name, False)
                params.append(_parameter(meta[option.name], option.name, option.spec.flags, help=option.spec.help,
                                         panel=None if option.spec.argument else _panel(cls, option.name)))
    for kind, registry in command.components.items():
        owners: dict[str, list[tuple[str, Option]]] = defaultdict(list)
        for owner, cls in sorted(registry.items()):
            for option in declared(cls):
                if option.spec.cli:
                    owners[option.name].append((owner, option))
        for name, declaring in owners.items():
            option = min((o for _, o in declaring), key=lambda o: len(o.spec.help))  # the most general help
            if name not in taken:
                taken.add(name)
                meta[name] = _Param(option, name, True)
                params.append(_parameter(meta[name], name, (), help=f"{option.spec.help} {_defaults(declaring)}",
                                         panel=f"{kind.capitalize()} options"))
            for owner, own in declaring:
                pname = _param_name(f"{owner}.{name}")
                if pname not in meta:
                    meta[pname] = _Param(own, f"{owner}.{name}", True)
                    flag = f"--{owner.replace('_', '-')}.{name.replace('_', '-')}"
                    params.append(_parameter(meta[pname], pname, (flag,), help=own.spec.help, panel=None,
                                             hidden=True))
    if command.offline:
        params.append(inspect.Parameter("offline", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
            bool, typer.Option(help="Never reach the network: hub models must be in the local cache (same as "
                                    "HF_HUB_OFFLINE=1).")]))
    params.append(inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Optional[Path], typer.Option(help="Options from a file: TOML (names as keys; a table \\[ifd] for one "
                                          "component's own), or a manifest.json to replay its run. Flags on the "
                                          "command line win.", is_eager=True, callback=_load_config)]))
    return _arguments_first(params), meta


def _param_name(key: str) -> str:
    """The Python name of the parameter behind an option key (`diverse-evol.initial` ->
    `diverse_evol__initial`): a component's name may hold a hyphen, a parameter's may not."""
    return key.replace("-", "_").replace(".", "__")


def _defaults(declaring: list[tuple[str, Option]]) -> str:
    """`[ifd, ppl_ins; default 'auto']`, or each component's default where they differ."""
    defaults = {repr(o.default) for _, o in declaring}
    if len(defaults) == 1:
        return f"[{', '.join(owner for owner, _ in declaring)}; default {defaults.pop()}]"
    return "[" + ", ".join(f"{owner}: default {o.default!r}" for owner, o in declaring) + "]"


def _arguments_first(params: list[inspect.Parameter]) -> list[inspect.Parameter]:
    """Required parameters before those with defaults (Python's rule for a signature)."""
    return sorted(params, key=lambda p: p.default is not inspect.Parameter.empty)


def _load_config(ctx: typer.Context, param: typer.CallbackParam, path: Optional[Path]) -> Optional[Path]:
    """`--config FILE`: its values become the command's defaults, so a flag on the command line
    still wins. Read before any other option (eager); a key that is no option of the command is
    an error naming the closest one."""
    if path is None:
        return None
    try:
        values = read_config(path)
    except SftpickError as error:
        raise UsageError(str(error)) from None
    made_by = values.pop("command", ctx.info_name)
    if made_by != ctx.info_name:
        raise UsageError(f"{path} is the config of `{made_by}`, not of `{ctx.info_name}`")
    params = {p.name: p for p in ctx.command.params if p.name != "config"}
    defaults = {}
    for key, value in values.items():
        name = _param_name(key)
        if name not in params:
            visible = [n for n, p in params.items() if not getattr(p, "hidden", False)]
            raise UsageError(f"{path}: {key} is no option of {ctx.info_name}{did_you_mean(key, visible)}")
        multiple = getattr(params[name], "multiple", False) or getattr(params[name], "nargs", 1) != 1
        defaults[name] = ",".join(map(str, value)) if isinstance(value, list) and not multiple else value
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return path


class _GeneratedCommand:
    """A command whose parameters come from `command`'s declarations, read again each time the
    CLI is built (typer reads `__signature__`), so a scorer or strategy registered after this
    module was imported has its flags too. `action` gets the options given (API keywords: NAME
    or OWNER.NAME; a component option not given is left out, so each component keeps its own
    default)."""

    def __init__(self, name: str, command: Command, action: Callable[[dict], None], help: str):
        self.__name__, self.__doc__ = name, help
        self.command, self.action = command, action

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.Signature(_parameters(self.command)[0])

    @property
    def __annotations__(self) -> dict:
        return {p.name: p.annotation for p in self.__signature__.parameters.values()}

    def __call__(self, **values) -> None:
        meta = _parameters(self.command)[1]
        values.pop("config", None)
        if values.pop("offline", False):
            os.environ["HF_HUB_OFFLINE"] = "1"
        given = {meta[k].key: v for k, v in values.items() if not (v is None or (meta[k].component and v == []))}
        _clean_errors(self.action)(given)


def add_command(name: str, command: Command, action: Callable[[dict], None], help: str, parent=app) -> None:
    parent.command(name, help=help)(_GeneratedCommand(name, command, action, help))


COMPONENTS_OF_SCORING = {"scorer": SCORERS}
COMMANDS = {
    "score": Command((ScoreSettings, ProxySettings), COMPONENTS_OF_SCORING, offline=True),
    "select": Command((SubsetSettings, SelectSettings), {"strategy": SELECTORS}),
    "run": Command((RunSettings,), {"scorer": SCORERS, "strategy": SELECTORS}, offline=True),
    "assess": Command((AssessSettings,), COMPONENTS_OF_SCORING, offline=True),
    "eval": Command((EvalSettings, TrainConfig)),
    "study": Command((StudySettings, TrainConfig), {"scorer": SCORERS, "strategy": SELECTORS}, offline=True),
    "experiments": Command((ExperimentSettings, TrainConfig), COMPONENTS_OF_SCORING),
}


def _split(given: dict, cls: type) -> tuple[dict, dict]:
    """(the options `cls` declares, the rest)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in given.items() if k in names}, {k: v for k, v in given.items() if k not in names}


def _score(given: dict) -> None:
    from .proxy import score_with_proxy
    from .scoring import rejects_path, score

    proxy, given = _split(given, ProxySettings)
    if proxy.get("proxy"):
        result = score_with_proxy(on_check=_print_proxy_check, **proxy, **given)[0]
    else:
        result = score(**given)
    _print_counts(result.counts, result.rejects)
    _print_curation(result.curation)
    _print_judge(result.timings)
    output = Path(given["output"])
    rejects = given.get("rejects") or rejects_path(output)
    console.print(f"scores: {output}\nrejects: {rejects}\nmanifest: {output.with_name(output.stem + '.manifest.json')}")


def _select(given: dict) -> None:
    from .selection import select_subset

    selection, manifest = select_subset(**given)
    _print_selection(selection)
    console.print(f"subset: {given['output']}\nmanifest: {manifest}")


def _run(given: dict) -> None:
    from .pipeline import run

    scored, selection = run(**given)
    _print_counts(scored.counts, scored.rejects)
    _print_curation(scored.curation)
    _print_judge(scored.timings)
    _print_selection(selection)
    console.print(f"outputs: {given['output_dir']}/ (scores.parquet, selected{scored.dataset.path.suffix}, "
                  "rejects.jsonl, manifest.json, report.html)")


def _assess(given: dict) -> None:
    from .assess import assess
    from .writers import atomic_write

    json_path = given.pop("json_path", None)
    report = assess(given.pop("data"), **given)
    _print_assessment(report)
    if json_path:
        atomic_write(json_path, json.dumps(report, indent=2, default=str))
        console.print(f"json: {json_path}")


def _eval(given: dict) -> None:
    from .train.api import evaluate
    from .train.summary import format_diff

    training, given = _split(given, TrainConfig)
    output_dir = given.pop("output_dir")
    result = evaluate(given.pop("train", []), output_dir, config=training, **given)
    _print_evaluation(result, format_diff)
    console.print(f"outputs: {output_dir}/ (result.json, result.html, manifest.json, arms/)")


def _study(given: dict) -> None:
    from .study import leaderboard_markdown, study

    board = study(given.pop("data"), given.pop("output_dir"), **given)
    make_console(stderr=False).print(leaderboard_markdown(board))


def _experiments(given: dict) -> None:
    from .train.api import rule_experiments

    training, given = _split(given, TrainConfig)
    rows = rule_experiments(given.pop("pools"), given.pop("output"), config=training, **given)
    console.print(f"experiments: {len(rows)} datasets; fit with `sftpick rule fit`")


add_command("score", COMMANDS["score"], _score,
            "Score every record; write one row per scored record and a rejects file.")
add_command("select", COMMANDS["select"], _select,
            "Choose records by their scores and write them in the input's own format.")
add_command("run", COMMANDS["run"], _run,
            "Score, select and write scores.parquet, selected.<ext>, rejects.jsonl, manifest.json and report.html.")
add_command("assess", COMMANDS["assess"], _assess,
            "Dataset-level indicators (mean, spread) and the Instruction Mining rule's loss estimate.")
add_command("eval", COMMANDS["eval"], _eval,
            "Fine-tune on each subset and on baselines; compare held-out loss (base model included).")
add_command("study", COMMANDS["study"], _study,
            "The bake-off: score once, select with every method, fine-tune every arm, write one leaderboard.")


# ---------------------------------------------------------------- commands with no method options

@app.command()
@_clean_errors
def compare(a: Annotated[Path, typer.Argument(help="First scores table (.parquet).")],
            b: Annotated[Path, typer.Argument(help="Second scores table (.parquet).")],
            column: Annotated[str, typer.Option(help="Score column to compare.")] = "ifd",
            ascending: Annotated[bool, typer.Option(help="Lower is better (default: higher is better).")] = False,
            json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures as JSON.")] = None):
    """Rank agreement of two score tables: Spearman, Kendall, top 5/10/15% overlap."""
    from .compare import compare as compare_tables
    from .writers import atomic_write

    agreement = compare_tables(a, b, column=column, ascending=ascending)
    make_console(stderr=False).print("\n".join(agreement.lines()))
    if json_path:
        atomic_write(json_path, json.dumps(agreement.to_dict(), indent=2))
        console.print(f"json: {json_path}")


@app.command()
@_clean_errors
def report(output_dir: Annotated[Path, typer.Argument(help="Output folder of `sftpick run`.")]):
    """Rebuild OUTPUT_DIR/report.html from the run's scores, manifest and input."""
    from .report import build_report

    console.print(f"report: {build_report(output_dir)}")


@app.command()
def demo(output_dir: Annotated[Path, typer.Option("-o", "--output-dir")] = Path("out"),
         budget: Annotated[str, typer.Option(help="Records to keep.")] = "10%",
         device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "auto"):
    """Run the whole job on the bundled sample (real Alpaca records) with the embedded model."""
    from .data import sample_path

    console.print(f"sample data: {sample_path()}")
    _clean_errors(_run)({"data": sample_path(), "output_dir": output_dir, "budget": budget, "device": device})


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
    from .writers import atomic_write

    fit = fit_rule(experiments, target, indicators=[n for n in indicators.split(",") if n] or None, log_target=log)
    table = Table(title=f"{fit.rule.target} ~ indicators ({fit.n_experiments} experiments)")
    for column in ("term", "coefficient", "std err", "p-value"):
        table.add_column(column)
    for term, value in [("intercept", fit.rule.intercept), *((t.column, t.coefficient) for t in fit.rule.terms)]:
        table.add_row(term, f"{value:.6g}", f"{fit.std_errors[term]:.3g}", f"{fit.p_values[term]:.3g}")
    console.print(table)
    console.print(f"R² = {fit.r_squared:.4f}, adjusted R² = {fit.adj_r_squared:.4f}")
    if output:
        atomic_write(output, json.dumps(fit.rule.to_dict(), indent=2))
        console.print(f"rule file: {output} (use with --rule-file)")


add_command("experiments", COMMANDS["experiments"], _experiments,
            "Instruction Mining's experiments: draw datasets from the pools, fine-tune and evaluate each, write "
            "the CSV.", parent=rule_app)


# ---------------------------------------------------------------- printing

def _print_proxy_check(checked) -> None:
    console.print(f"proxy check: {checked.weak} (weak) vs {checked.strong} (strong), {checked.sample} sampled records")
    console.print("\n".join(checked.agreement.lines()))


def _print_counts(counts: dict, rejects) -> None:
    table = Table(title="records", show_header=False)
    for key in ("input", "scored", "rejected"):
        table.add_row(key, str(counts[key]))
    for reason, n in Counter(r.kind for r in rejects).most_common():
        table.add_row(f"  rejected: {reason}", str(n))
    for reason, n in counts.get("removed_by_reason", {}).items():
        table.add_row(f"  removed before selection: {reason}", str(n))
    console.print(table)


def _print_curation(curation: dict) -> None:
    """Duplicates kept on request, and how many records of each test set the pool held."""
    if curation.get("exact_duplicates_kept"):
        console.print(f"duplicates kept (--dedup none): {curation['exact_duplicates_kept']} exact duplicates")
    for path, found in curation.get("tests_found", {}).items():
        short = found.get("too_short_to_check")
        console.print(f"decontaminate: {found['found_in_pool']} of the {found['records']} records of {path} "
                      "were found in the pool" + (f" ({short} too short to be looked for)" if short else ""))


def _print_judge(timings: dict) -> None:
    """The judge's ratings by value and its retries, so a collapsed judge is seen at once."""
    stats = timings.get("judge")
    if not stats:
        return
    ratings = ", ".join(f"{value}: {n}" for value, n in stats["ratings_now"].items()) or "none"
    console.print(f"judge: {stats['requests']} requests, {stats['retries']} retries; ratings made now by value: "
                  f"{ratings}; rejected now: {stats['rejected_now']}; from the journal: {stats['from_journal']}")
    if stats.get("note"):
        console.print(Text("note: ", style="yellow") + Text(stats["note"]))


def _print_selection(selection) -> None:
    for reason, n in selection.dropped.items():
        console.print(f"dropped before ranking: {n} ({reason})")
    console.print(f"selected: {len(selection.rows)} of {selection.requested} asked for")
    for note in selection.notes:
        console.print(Text("note: ", style="yellow") + Text(note))
    if selection.stats:
        console.print("strategy: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                               for k, v in selection.stats.items()))


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
        console.print(f"rule estimate ({rule['target']}): missing, no value for {', '.join(rule['missing'])}")
    else:
        console.print(f"rule estimate ({rule['target']}): {rule['estimate']:.4f}")


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
    console.print("An arm with more response tokens trains on more tokens: compare losses with that in mind.")
    if result.get("win_rate"):
        _print_win_rates(result["win_rate"], result["win_rate_settings"]["reference"])
    if result["base"].get("accuracy"):
        _print_accuracy(result)


def _print_accuracy(result: dict) -> None:
    """Benchmark metrics per arm (means over seeds) beside the base model's."""
    table = Table(title="lm-evaluation-harness (mean over seeds)")
    cells = [(task, metric) for task, metrics in result["base"]["accuracy"].items() for metric in metrics]
    for column in ("arm", *(f"{task} {metric}" for task, metric in cells)):
        table.add_column(column)
    table.add_row("base model", *(f"{result['base']['accuracy'][t][m]:.4f}" for t, m in cells))
    for row in result["summary"]:
        table.add_row(row["name"], *(f"{row['accuracy'][t][m]:.4f}" for t, m in cells))
    make_console(stderr=False).print(table)


def _print_win_rates(win_rates: dict, reference: str) -> None:
    table = Table(title=f"judged against {reference}, both orders (win rate = (wins - losses) / n + 1)")
    for column in ("arm", "prompts", "wins", "ties", "losses", "unparsed", "win rate", "95% bootstrap"):
        table.add_column(column)
    for arm, sets in win_rates.items():
        for name, c in sets.items():
            table.add_row(arm, name, *(str(c[k]) for k in ("wins", "ties", "losses", "unparsed")),
                          "" if c["win_rate"] is None else f"{c['win_rate']:.3f}",
                          f"[{c['ci'][0]:.3f}, {c['ci'][1]:.3f}]" if c["ci"] else "")
    make_console(stderr=False).print(table)


def main() -> None:
    app(prog_name="sftpick")  # also under `python -m sftpick.cli`


if __name__ == "__main__":
    main()
