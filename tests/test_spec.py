"""The run specification: every option checked before any work, one-line errors naming the
option, the CLI made from its fields, shards carrying every field."""

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from selfcorrect.cli import app
from selfcorrect.errors import SelfCorrectError
from selfcorrect.spec import DEFAULT_CONDITIONS, LADDER, RunSpec, flag_of


def test_defaults_and_normalisation():
    s = RunSpec()
    assert s.conditions == DEFAULT_CONDITIONS and s.limit == 264 and s.readout == ("logprob",)
    s = RunSpec.build(models=" ladder ", conditions="baseline, s1", limit="all", categories="")
    assert s.models == LADDER and s.conditions == ("baseline", "s1") and s.limit is None
    assert s.categories == ()
    with pytest.raises(ValidationError, match="frozen"):
        s.seed = 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"conditions": ","}, "--conditions has an empty or invalid name"),
        ({"models": ","}, "--model has an empty or invalid name"),
        ({"readout": ""}, "--readout has an empty or invalid name"),
        ({"conditions": []}, "--conditions needs at least one name"),
        ({"limit": "lots"}, "--limit must be a number or 'all', got 'lots'"),
        ({"limit": -3}, "--limit must be >= 1 (or 'all'), got -3"),
        ({"batch_size": -1}, "--batch-size must be >= 1, got -1"),
        ({"batch_size": 0}, "--batch-size must be >= 1, got 0"),
        ({"rounds": -1}, "--rounds must be >= 0, got -1"),
        ({"concurrency": 0}, "--concurrency must be >= 1"),
        ({"bootstrap": -5}, "--bootstrap must be >= 0"),
        ({"cot_temperature": float("nan")}, "--cot-temperature must be a finite number > 0"),
        ({"cot_temperature": 0}, "--cot-temperature must be a finite number > 0"),
        ({"device": "tpu9"}, "unknown device 'tpu9' (valid: cpu, cuda, cuda:N, mps)"),
        ({"backend": "vllm"}, "unknown backend 'vllm' (valid: llamacpp, transformers)"),
        ({"readout": "logprob,guess"}, "unknown readout 'guess' (valid: cloze, generate, logprob)"),
        ({"dtype": "int4"}, "--dtype Input should be 'bfloat16', 'float16' or 'float32'"),
        ({"head_dtype": "float64"}, "--head-dtype Input should be 'model' or 'float32'"),
        ({"benchmark": "mmlu"}, "unknown benchmark 'mmlu'"),
        ({"categories": "Age,Colour"}, "unknown BBQ category 'Colour'"),
        ({"conditions": "baseline,nicely"}, "unknown condition 'nicely'"),
        ({"benchmark": "winogender", "conditions": "oracle,s2-neg"}, ""),
        ({"critic": "x"}, "--critic writes the feedback of each round"),
        ({"colour": 1}, "--colour: unknown option"),
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    if not message:  # a valid combination
        RunSpec.build(**options)
        return
    with pytest.raises(SelfCorrectError) as err:
        RunSpec.build(**options)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_every_field_is_a_cli_option():
    flags = {opt for p in typer_command().params for opt in p.opts}
    for name in RunSpec.model_fields:
        assert flag_of(name) in flags, name
    assert "--plan" in flags and "--quiet" in flags


def typer_command():
    import typer.main

    return typer.main.get_command(app).commands["run"]


def test_cli_reports_spec_errors_in_one_line():
    r = CliRunner().invoke(app, ["run", "--batch-size", "-1"])
    assert r.exit_code == 2 and r.output.strip() == "error: --batch-size must be >= 1, got -1"


def test_a_shard_carries_every_field_even_new_ones():
    class Extended(RunSpec):
        new_option: int = 7

    spec = Extended(models="a,b", conditions="baseline,instruct", seed=5, new_option=9)
    shard = spec.shard(models=("a",), conditions=("instruct",))
    assert isinstance(shard, Extended) and shard.new_option == 9 and shard.seed == 5
    same = {k for k in Extended.model_fields if getattr(shard, k) == getattr(spec, k)}
    assert set(Extended.model_fields) - same == {"models", "conditions"}
