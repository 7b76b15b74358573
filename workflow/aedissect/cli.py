"""The aedissect command: dissect your own autoencoder class, profile a trained model, list and check studies.

  aedissect profile results/runs/<run>/model.pt [--data digits] [--config config.yaml] [--out profile.csv]
  aedissect dissect path/to/file.py:Class [--kwarg name=value ...] [--data digits] [--seeds 0 1 2]
  aedissect studies [--dir studies]
  aedissect check config.yaml [more.yaml ...]
  aedissect config-reference [--check] [--file docs/config.md]

Installed by pip install -e . (or run as python -m aedissect). Every error names what it is about (the option,
the study file and its config key, the model file); the exit status is 1 after one. This text is the --help of
the command, so it is plain text, not reStructuredText.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from aedissect import config, config_reference, datasets, measured, slurm_resources


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def read_config(path: str | Path) -> dict:
    """A study config file, validated (defaults filled in); CliError names the file and the key."""
    try:
        return config.read_study(path)
    except config.ConfigError as err:
        raise CliError(str(err)) from None


def check(args) -> int:
    failed = 0
    for path in args.configs:
        try:
            study = read_config(path)
        except CliError as err:
            print(f"aedissect check: study {err}", file=sys.stderr)
            failed += 1
            continue
        print(f"{path}: ok, {len(config.grid(study))} runs")
    return 1 if failed else 0


def repo_root(start: Path | None = None) -> Path:
    """The repository the command runs in: the nearest folder at or above ``start`` (the working directory) with
    a Snakefile and a config.yaml, else the one this package was installed from."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "Snakefile").is_file() and (folder / "config.yaml").is_file():
            return folder
    return Path(__file__).resolve().parents[2]


def study_paths(folder: str | None) -> tuple[Path, list[Path]]:
    """The study configs to list and the folder their names are relative to: --dir's *.yaml, or the repository's
    config.yaml and studies/*.yaml."""
    if folder is not None:
        paths = sorted(Path(folder).glob("*.yaml"))
        if not paths:
            raise CliError(f"--dir {folder}: no study configs (*.yaml) found")
        return Path(folder), paths
    root = repo_root()
    return root, [path for path in (root / "config.yaml", *sorted((root / "studies").glob("*.yaml"))) if path.is_file()]


def studies(args) -> int:
    """Each study's size and cost, without asking Snakemake: its runs, its training jobs and model-epochs
    (``slurm_resources.job_epochs``), and their time one job after another at the bench's measured rates."""
    base, paths = study_paths(args.dir)
    measurements = measured.load()
    paper_study = base / "studies" / "mnist.yaml"  # the study whose largest net the bench times
    cost = None
    if paper_study.is_file():
        cost = measured.cost_model(measurements, slurm_resources.largest_net_macs(read_config(paper_study)))
    print(f"{'study':<26} {'datasets':<16} {'runs':>5} {'training jobs':>13} {'model-epochs':>12} {'est. time':>12}")
    failed = 0
    for path in paths:
        try:
            study = read_config(path)
        except CliError as err:
            print(f"aedissect studies: study {err}", file=sys.stderr)
            failed += 1
            continue
        work = slurm_resources.job_epochs(study)
        jobs = sum(len(per_job) for per_job in work.values())
        epochs = sum(sum(per_job.values()) for per_job in work.values())
        estimate = "–" if cost is None else measured.duration(slurm_resources.training_seconds(study, cost))
        name = str(path.relative_to(base)) if path.is_relative_to(base) else str(path)
        datasets_ = ",".join(study["datasets"])
        print(f"{name:<26} {datasets_:<16} {len(config.grid(study)):>5} {jobs:>13} {epochs:>12} {estimate:>12}")
    print(time_note(measurements))
    return 1 if failed else 0


def time_note(measurements: dict) -> str:
    """Where the estimated times come from."""
    entry = measurements.get("paper_ae_member_samples_per_s")
    if entry is None:
        return "est. time: no measured training rate in docs/measured.json yet (make bench writes it)"
    return (
        "est. time: the training jobs one after another, at the seconds per sample make bench measured for a "
        "digits-sized and an MNIST-sized net, interpolated by each net's multiply-adds (docs/measured.json: "
        f"{entry['device']}, {entry['threads']} threads, commit {entry['commit']}, {entry['date']}); start-up, "
        "truncation and the tables are left out"
    )


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
    # the files first: a wrong path is reported before torch is imported (seconds)
    checkpoint = Path(args.checkpoint)
    if not checkpoint.exists():
        raise CliError(f"model file {checkpoint}: no such file")
    if args.data and args.data.endswith(".pt") and not Path(args.data).is_file():
        raise CliError(f"--data {args.data}: no such file")
    probe_options = option_values(args.option)
    try:
        config.section("truncation", probe_options)
    except config.ConfigError as err:
        raise CliError(f"--option: {err}") from None
    from aedissect import io
    from aedissect.nets import api, chains, data, user_models
    from aedissect.nets.models import load_model

    try:
        payload = user_models.read_checkpoint(checkpoint)
        if user_models.is_pipeline_payload(payload):
            if args.model_class:
                raise CliError(f"{checkpoint} is a pipeline model.pt, which names its own class: drop --model")
            model, payload = load_model(str(checkpoint))
        else:
            if not args.model_class:
                raise CliError(
                    f"{checkpoint} is a state dict: name its class with --model module:Class (or "
                    "path/to/file.py:Class) and its arguments with --kwarg name=value"
                )
            if not args.data:
                raise CliError(f"{checkpoint}: a state dict does not say which data it was trained on: pass --data")
            kwargs = user_models.keyword_arguments(args.kwarg)
            model = user_models.build(args.model_class, kwargs)
            model = user_models.load_state(model, payload, checkpoint, args.model_class)
            payload = {"config": {"run_id": checkpoint.stem}}
    except user_models.UserModelError as err:
        raise CliError(str(err)) from None
    except ValueError as err:
        raise CliError(f"model file {err}") from None  # the message starts with the path
    source = args.data or payload["config"]["dataset"]
    # a prepared data set (results/data/<dataset>.pt) is the pipeline's own; a name is built as prepare_data does,
    # with the data: options of --config, of ./config.yaml where there is one, else the schema's defaults
    if not source.endswith(".pt") and args.config and not Path(args.config).exists():
        raise CliError(
            f"--config {args.config}: no such file; name the study config whose data: options build {source}, "
            f"or pass --data results/data/{source}.pt"
        )
    study = args.config or ("config.yaml" if Path("config.yaml").exists() else None)
    try:
        if source.endswith(".pt"):
            options = None
        else:
            options = read_config(study)["data"] if study else config.section("data")
    except CliError as err:
        raise CliError(f"--config {err}") from None
    try:
        tensors = data.load(source) if options is None else data.build(source, options)
    except data.DataError as err:
        raise CliError(f"--data {source}: {err}") from None
    if "in_dim" in payload and tensors["x_test"].shape[1] != payload["in_dim"]:
        raise CliError(
            f"--data {source}: samples have {tensors['x_test'].shape[1]} features, "
            f"{checkpoint} was trained on {payload['in_dim']}"
        )
    if args.input_shape:
        tensors = {key: _shaped(key, value, args.input_shape) for key, value in tensors.items()}
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
            encoder=args.encoder,
            decoder=args.decoder,
            kind=args.kind,
            cuts=args.cut or None,
            **targets,
            **probe_options,
        )
    except config.ConfigError as err:
        raise CliError(f"--option: {err}") from None
    except chains.ModelError as err:
        raise CliError(f"--model {args.model_class}: {err}") from None
    if args.out:
        io.write_csv(frame, args.out)
        print(f"{args.out}: {frame['cut'].nunique()} cuts x {frame['metric'].nunique()} metrics", file=sys.stderr)
    else:
        frame.to_csv(sys.stdout, index=False, float_format="%.10g", lineterminator="\n")
    return 0


def dissect(args) -> int:
    """Train seeds of the user's class, profile, check and judge them (``nets.dissect``); print the verdict."""
    from aedissect import io
    from aedissect.nets import chains, data, user_models
    from aedissect.nets import dissect as dissection

    try:
        kwargs = user_models.keyword_arguments(args.kwarg)
        user_models.build(args.model_class, kwargs)  # fails here, before any training, if the class or its arguments do
    except user_models.UserModelError as err:
        raise CliError(str(err)) from None
    training = {key: getattr(args, key) for key in ("epochs", "batch_size", "lr") if getattr(args, key) is not None}
    shape = tuple(int(d) for d in args.input_shape.split(",")) if args.input_shape else None
    try:
        tables = dissection.dissect(
            lambda: user_models.build(args.model_class, kwargs),
            args.data,
            seeds=args.seeds,
            kind=args.kind,
            encoder=args.encoder,
            decoder=args.decoder,
            input_shape=shape,
            training_options=training,
            truncation=option_values(args.option),
            device=args.device,
        )
    except chains.ModelError as err:
        raise CliError(f"--model {args.model_class}: {err}") from None
    except data.DataError as err:
        raise CliError(f"--data {args.data}: {err}") from None
    except config.ConfigError as err:
        raise CliError(f"--option: {err}") from None
    if args.out:
        for name, table in tables.items():
            io.write_csv(table, Path(args.out) / f"{name}.csv")
    print(controls_text(tables["controls"]))
    for row in tables["verdicts"].itertuples():
        print(f"verdict: {row.verdict}\n{row.sentence}")
    return 0


def controls_text(controls) -> str:
    """Per check: how many models passed, their ratio to the reference against the threshold, the failures."""
    from aedissect.formatting import number

    applicable = controls[controls["passed"].notna()]
    lines = [f"controls: {int(applicable['passed'].astype(bool).sum())} of {len(applicable)} applicable checks passed"]
    for check, rows in applicable.groupby("check", sort=False):
        ratios = rows["ratio"].dropna()
        spread = f", ratio {number(ratios.min())} to {number(ratios.max())}" if len(ratios) else ""
        note = str(rows["note"].iloc[0]) if str(rows["note"].iloc[0]) not in ("", "nan") else ""
        lines.append(
            f"  {check}: {int(rows['passed'].astype(bool).sum())} of {len(rows)} passed{spread} "
            f"(threshold {number(rows['threshold'].iloc[0])}){'; ' + note if note else ''}"
        )
    return "\n".join(lines)


def _shaped(key: str, value, shape: str):
    """The data set's inputs as the model takes them: rows reshaped to ``--input-shape`` (e.g. 1,28,28)."""
    if not key.startswith("x_"):
        return value
    try:
        dims = tuple(int(d) for d in shape.split(","))
        return value.reshape(value.shape[0], *dims)
    except (ValueError, RuntimeError):
        raise CliError(
            f"--input-shape {shape}: rows of {value.shape[1]} features cannot take that shape (e.g. 1,28,28)"
        ) from None


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="aedissect", description=__doc__.split("\n")[0])
    commands = top.add_subparsers(dest="command", required=True)

    p = commands.add_parser("profile", help="layer profile of a trained model on a data set's test split")
    p.add_argument(
        "checkpoint",
        metavar="MODEL.pt",
        help="a model.pt written by the pipeline (results/runs/<run>/model.pt), or a state dict with --model",
    )
    p.add_argument(
        "--model",
        dest="model_class",
        metavar="MODULE:CLASS",
        help="the class of a state dict: module:Class or path/to/file.py:Class, built with the --kwarg arguments",
    )
    p.add_argument("--kwarg", action="append", default=[], metavar="NAME=VALUE", help="an argument of --model's class")
    p.add_argument("--encoder", default="encoder", help="the encoder chain's module name (default: encoder)")
    p.add_argument("--decoder", default="decoder", help="the decoder chain's module name (default: decoder)")
    p.add_argument("--kind", choices=["ae", "vae"], default="ae", help="vae: the encoder gives mu and log var")
    p.add_argument("--cut", action="append", default=[], metavar="MODULE", help="cut only after these modules")
    p.add_argument("--input-shape", metavar="C,H,W", help="reshape the data set's rows for the model (conv nets)")
    p.add_argument(
        "--data",
        help="a data set name (built with the data: options of --config) or a prepared results/data/<name>.pt; "
        "default: the data set the model was trained on",
    )
    p.add_argument(
        "--config",
        help="the study config whose data: options build --data (default: ./config.yaml, else the schema's defaults)",
    )
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

    d = commands.add_parser(
        "dissect", help="train seeds of your own autoencoder class, profile and check them, and print the verdict"
    )
    d.add_argument("model_class", metavar="MODULE:CLASS", help="module:Class or path/to/file.py:Class")
    d.add_argument("--kwarg", action="append", default=[], metavar="NAME=VALUE", help="an argument of the class")
    d.add_argument("--data", default="digits", help="a data set of the registry (default: digits)")
    d.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to train (default: 0 1 2)")
    d.add_argument("--kind", choices=["ae", "vae"], default="ae", help="vae: the encoder gives mu and log var")
    d.add_argument("--encoder", default="encoder", help="the encoder chain's module name (default: encoder)")
    d.add_argument("--decoder", default="decoder", help="the decoder chain's module name (default: decoder)")
    d.add_argument("--input-shape", metavar="C,H,W", help="the shape one sample takes in the model (conv nets)")
    d.add_argument("--epochs", type=int, help="training epochs (default: the default study's, 40)")
    d.add_argument("--batch-size", type=int, help="batch size (default: 64)")
    d.add_argument("--lr", type=float, help="peak learning rate of the cosine schedule (default: 0.01)")
    d.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="a truncation: option (repeatable)"
    )
    d.add_argument("--out", help="write the tables (runs, profiles, controls, verdicts, ...) to this folder")
    d.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where training and probes run")
    d.set_defaults(run=dissect)

    s = commands.add_parser("studies", help="list the study configs, their size and estimated time")
    s.add_argument("--dir", help="a folder of study configs (default: the repository's config.yaml and studies/*.yaml)")
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
