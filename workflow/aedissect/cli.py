"""The ``aedissect`` command (``pip install -e .``; ``python -m aedissect`` without installing).

  aedissect profile results/runs/<run>/model.pt [--data digits] [--config config.yaml] [--out profile.csv]
  aedissect studies [--dir studies]
  aedissect check config.yaml [more.yaml ...]
  aedissect config-reference [--check] [--file docs/config.md]

Every error names the file or the config key; the exit status is 1 after one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from aedissect import config, config_reference


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def read_config(path: str | Path) -> dict:
    """A study config file, validated (defaults filled in); CliError names the file and the key."""
    path = Path(path)
    try:
        raw = config.load_yaml(path)
    except OSError as err:
        raise CliError(f"{path}: cannot read it ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise CliError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise CliError(f"{path}: a study config is a mapping of keys, not {type(raw).__name__}")
    try:
        return config.validate(raw)
    except config.ConfigError as err:
        raise CliError(f"{path}: {err}") from None


def check(args) -> int:
    failed = 0
    for path in args.configs:
        try:
            study = read_config(path)
        except CliError as err:
            print(err, file=sys.stderr)
            failed += 1
            continue
        print(f"{path}: ok, {len(config.grid(study))} runs")
    return 1 if failed else 0


def studies(args) -> int:
    """Each study's size: what ``snakemake -n`` would plan for training, without asking Snakemake."""
    paths = sorted(Path(args.dir).glob("*.yaml"))
    if not paths:
        raise CliError(f"{args.dir}: no study configs (*.yaml) found")
    print(f"{'study':<32} {'datasets':<24} {'runs':>6} {'train jobs':>10} {'epochs':>8}")
    failed = 0
    for path in paths:
        try:
            study = read_config(path)
        except CliError as err:
            print(err, file=sys.stderr)
            failed += 1
            continue
        runs = config.grid(study)
        cells = {config.run_cell(run) for run in runs}
        epochs = sum(run["training"]["epochs"] for run in runs)
        print(f"{str(path):<32} {','.join(study['datasets']):<24} {len(runs):>6} {len(cells):>10} {epochs:>8}")
    return 1 if failed else 0


def reference(args) -> int:
    """The config reference generated from the schema's descriptions; with --check, whether --file equals it."""
    try:
        text = config_reference.render(config.load_yaml(args.schema))
    except OSError as err:
        raise CliError(f"{args.schema}: cannot read it ({err.strerror})") from None
    if not args.check:
        sys.stdout.write(text)
        return 0
    try:
        current = Path(args.file).read_text()
    except OSError as err:
        raise CliError(f"{args.file}: cannot read it ({err.strerror})") from None
    if current != text:
        raise CliError(
            f"{args.file} differs from the descriptions in {args.schema}; "
            f"regenerate it: aedissect config-reference > {args.file}"
        )
    print(f"{args.file}: up to date")
    return 0


def option_values(pairs: list[str]) -> dict:
    """``key=value`` pairs, each value read as YAML (``5``, ``[32, 32]``, ``0.01``)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CliError(f"--option {pair!r}: expected key=value, e.g. nonlinear_epochs=5")
        options[key] = yaml.load(value, Loader=config.StudyLoader)
    return options


def profile(args) -> int:
    from aedissect import datasets, io
    from aedissect.nets import api, data
    from aedissect.nets.models import load_model

    try:
        model, payload = load_model(args.model)
    except FileNotFoundError:
        raise CliError(f"{args.model}: no such model file") from None
    except ValueError as err:
        raise CliError(str(err)) from None
    source = args.data or payload["config"]["dataset"]
    # a prepared data set (results/data/<dataset>.pt) is the pipeline's own; a name is built as prepare_data does
    if not source.endswith(".pt") and not Path(args.config).exists():
        raise CliError(
            f"--config {args.config}: no such file; name the study config whose data: options build {source}, "
            f"or pass --data results/data/{source}.pt"
        )
    options = None if source.endswith(".pt") else read_config(args.config)["data"]
    try:
        tensors = data.load(source) if options is None else data.build(source, options)
    except data.DataError as err:
        raise CliError(f"--data {source}: {err}") from None
    if tensors["x_test"].shape[1] != payload["in_dim"]:
        raise CliError(
            f"--data {source}: samples have {tensors['x_test'].shape[1]} features, "
            f"{args.model} was trained on {payload['in_dim']}"
        )
    if options is None:  # the prepared data set's description (results/data/<dataset>.json) names its factors
        info = Path(source).with_suffix(".json")
        factor_columns = json.loads(info.read_text())["factor_names"] if info.exists() else None
    else:
        factor_columns = datasets.factor_columns(source, options)
    targets = {
        "factor_columns": factor_columns or None,
        "y": tensors.get("y_test"),
        "y_fit": tensors.get("y_train"),
        "factors": tensors.get("factors_test"),
        "factors_fit": tensors.get("factors_train"),
    }
    try:
        frame = api.profile(
            model,
            tensors["x_test"],
            x_fit=tensors["x_train"],
            name=payload["config"]["run_id"],
            device=args.device,
            **targets,
            **option_values(args.option),
        )
    except config.ConfigError as err:
        raise CliError(f"--option: {err}") from None
    if args.out:
        io.write_csv(frame, args.out)
        print(f"{args.out}: {frame['cut'].nunique()} cuts x {frame['metric'].nunique()} metrics", file=sys.stderr)
    else:
        frame.to_csv(sys.stdout, index=False, float_format="%.10g", lineterminator="\n")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="aedissect", description=__doc__.split("\n")[0])
    commands = top.add_subparsers(dest="command", required=True)

    p = commands.add_parser("profile", help="layer profile of a trained model.pt on a data set's test split")
    p.add_argument("model", help="a model.pt written by the pipeline (results/runs/<run>/model.pt)")
    p.add_argument(
        "--data",
        help="a data set name (built with the data: options of --config) or a prepared results/data/<name>.pt; "
        "default: the data set the model was trained on",
    )
    p.add_argument("--config", default="config.yaml", help="the study config whose data: options to use")
    p.add_argument("--out", help="write the profile to this CSV (default: print it)")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a truncation: option instead of its schema default, e.g. nonlinear_epochs=5 (repeatable)",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the nonlinear probes train")
    p.set_defaults(run=profile)

    s = commands.add_parser("studies", help="list the study configs and their size")
    s.add_argument("--dir", default="studies", help="folder of study configs (default: studies)")
    s.set_defaults(run=studies)

    c = commands.add_parser("check", help="validate study configs against the schema")
    c.add_argument("configs", nargs="+", help="config files (config.yaml, studies/*.yaml)")
    c.set_defaults(run=check)

    r = commands.add_parser(
        "config-reference", help="print the config reference (docs/config.md) generated from the schema"
    )
    r.add_argument("--check", action="store_true", help="exit 1 when --file differs from the generated reference")
    r.add_argument("--file", default=str(config_reference.DOC_PATH), help="the page --check compares (docs/config.md)")
    r.add_argument("--schema", default=str(config.SCHEMA_PATH), help="the config schema (workflow/schemas/)")
    r.set_defaults(run=reference)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except CliError as err:
        print(f"aedissect {args.command}: {err}", file=sys.stderr)
        return 1
