"""`selfcorrect run | report | score | models | conditions | benchmarks`."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from selfcorrect import api
from selfcorrect.errors import SelfCorrectError
from selfcorrect.report import headline

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    help="Measure whether language models can morally self-correct (BBQ; G23/L24 protocols).",
)
# Piped output is not wrapped at 80 columns: results tables are wide.
out_console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)


def _friendly(fn):
    """User errors become one line on stderr and exit 2; Ctrl-C keeps what is stored."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SelfCorrectError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print(
                "interrupted: finished answers are stored; run the same command again to resume"
            )
            raise typer.Exit(130) from None

    return wrapper


def _print_df(df, title: str | None = None) -> None:
    table = Table(title=title, show_lines=False)
    for col in df.columns:
        table.add_column(str(col), overflow="fold")
    for row in df.itertuples(index=False):
        table.add_row(*[str(v) for v in row])
    out_console.print(table)


def _parse_limit(limit: str) -> int | None:
    if limit.strip().lower() == "all":
        return None
    try:
        return int(limit)
    except ValueError:
        raise SelfCorrectError(f"--limit must be a number or 'all', got '{limit}'") from None


@app.command()
@_friendly
def run(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="Model name(s), comma-separated: registry names, .gguf files or HF directories.",
        ),
    ] = "smollm2-135m-instruct",
    benchmark: Annotated[str, typer.Option(help="Benchmark name.")] = "bbq",
    conditions: Annotated[str, typer.Option(help="Conditions, comma-separated.")] = ",".join(
        api.DEFAULT_CONDITIONS
    ),
    categories: Annotated[
        str, typer.Option(help="Categories, comma-separated (default all).")
    ] = "",
    limit: Annotated[str, typer.Option(help="Items in the stratified sample, or 'all'.")] = str(
        api.DEFAULT_LIMIT
    ),
    seed: Annotated[int, typer.Option(help="Sampling and bootstrap seed.")] = 0,
    out: Annotated[Path, typer.Option(help="Results directory (resumed if it exists).")] = Path(
        api.DEFAULT_OUT
    ),
    rounds: Annotated[int, typer.Option(help="Feedback rounds after each answer.")] = 0,
    readout: Annotated[
        str, typer.Option(help="logprob, generate, or both comma-separated (same items).")
    ] = "logprob",
    backend: Annotated[str, typer.Option(help="transformers or llamacpp.")] = "transformers",
    critic: Annotated[
        str | None, typer.Option(help="A model that writes each round's feedback (extrinsic).")
    ] = None,
    cot_temperature: Annotated[
        float | None, typer.Option(help="Sample reasoning at this temperature (seeded by --seed).")
    ] = None,
    library: Annotated[Path | None, typer.Option(help="A condition library TOML file.")] = None,
    dtype: Annotated[str, typer.Option(help="bfloat16, float16 or float32.")] = "bfloat16",
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: auto).")] = None,
    batch_size: Annotated[int, typer.Option(help="Requests per stored batch.")] = 64,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates for CIs.")] = 1000,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow model code from HF dirs.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="OpenAI-compatible server for openai:NAME models (key: $SELFCORRECT_API_KEY)."
        ),
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            help="Tokenizer of a served model (packaged name or HF dir) for client-side templates."
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Parallel requests to a served model.")] = 8,
    ray: Annotated[
        str | None,
        typer.Option(help="Shard (model x condition) over a Ray cluster: its address, or 'local'."),
    ] = None,
    plan: Annotated[
        Path | None,
        typer.Option(help="A sweep plan (TOML: models x benchmarks x conditions x rounds)."),
    ] = None,
):
    """Evaluate model(s) under conditions, store everything, print the results table.
    `--model ladder` runs the four packaged models; `--plan FILE` a whole sweep."""
    if plan is not None:
        rep = api.run_plan(
            plan, out=None if str(out) == api.DEFAULT_OUT else out, progress=not quiet, ray=ray
        )
        for key, df in rep.tables.items():
            if key.endswith("_summary"):
                _print_df(headline(df), title=f"{key[: -len('_summary')]}: results [95% CI]")
        _print_df(rep.tables["verdicts"].drop(columns=["rule"]), title="verdicts")
        out_console.print(f"report: {rep.directory}/report/report.html")
        return
    res = api.run(
        models=model,
        benchmark=benchmark,
        conditions=conditions,
        categories=categories or None,
        limit=_parse_limit(limit),
        seed=seed,
        out=out,
        rounds=rounds,
        readout=readout,
        backend=backend,
        critic=critic,
        cot_temperature=cot_temperature,
        library=library,
        dtype=dtype,
        device=device,
        batch_size=batch_size,
        n_boot=bootstrap,
        progress=not quiet,
        trust_remote_code=trust_remote_code,
        base_url=base_url,
        tokenizer=tokenizer,
        concurrency=concurrency,
        ray=ray,
    )
    _print_df(headline(res.summary), title=f"{benchmark}: results [95% CI]")
    m = res.manifest
    out_console.print(
        f"results: {res.directory}/results.sqlite, report: "
        f"{res.directory}/report/ ({m['n_items']} items, wall {m['wall_s']} s, "
        f"peak RSS {m['peak_rss_mb']} MB)"
    )


@app.command()
@_friendly
def report(
    directory: Annotated[Path, typer.Argument(help="A results directory.")],
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates for CIs.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    reference: Annotated[
        str, typer.Option(help="Reference condition for paired diffs.")
    ] = "baseline",
    bias_variant: Annotated[
        str, typer.Option(help="BBQ bias score: bbq (reference analysis) or helm.")
    ] = "bbq",
):
    """Recompute all metrics from the store (no model) and write Markdown and CSV tables."""
    rep = api.report(
        directory, n_boot=bootstrap, seed=seed, reference=reference, bias_variant=bias_variant
    )
    for key, df in rep.tables.items():
        if key.endswith("_summary"):
            _print_df(headline(df), title=f"{key[:-8]}: accuracy %, bias x100 [95% CI]")
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
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
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
        sys.stdout.write(api.dumps(payload) + "\n")
        return
    from selfcorrect.report import headline

    _print_df(headline(tables["summary"]), title="accuracy %, bias x100 [95% CI]")


@app.command()
@_friendly
def models():
    """List packaged models, their size and whether they are installed."""
    df = api.models()
    table = Table(title="Models (also: any local .gguf file or HF model directory)")
    for col in ("name", "params (M)", "kind", "size (MB)", "installed", "install"):
        table.add_column(col, overflow="fold")
    for r in df.itertuples():
        table.add_row(
            r.name,
            str(r.params_m),
            r.kind,
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


@app.command()
@_friendly
def benchmarks():
    """List the benchmarks and their categories."""
    for b in api.benchmarks():
        out_console.print(f"[bold]{b['name']}[/]: {b['description']}")
        out_console.print(
            "    categories: " + ", ".join(b["categories"]), highlight=False, soft_wrap=True
        )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
