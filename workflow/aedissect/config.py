"""The sweep as data: one study config in, one resolved config per run out.

A run id names a grid cell and a seed, ``<dataset>/<kind>/<arch>/z<bottleneck>/<activation>/s<seed>``;
it is also the run's folder under ``results/runs/``. Everything a run depends on is in its resolved
config, so the hash of that dict identifies the run's inputs.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import NotRequired, TypedDict

import yaml

from aedissect.architectures import ArchitectureError, cut_shapes, flat_width, has_conv, image_channels_first, labels
from aedissect.datasets import REGISTRY, data_options, input_size

# the schema beside the package in the repository (workflow/schemas/), which the workflow passes as its own source
# path; a non-editable install carries it inside the package (pyproject.toml: aedissect.schemas)
SCHEMA_PATH = next(
    (here / "schemas" / "config.schema.yaml")
    for here in (Path(__file__).resolve().parents[1], Path(__file__).resolve().parent)
    if (here / "schemas" / "config.schema.yaml").exists()
)

ACTIVATIONS = ("relu", "tanh", "gelu", "linear")
MODEL_KINDS = ("ae", "vae")
DATASETS = tuple(REGISTRY)
# linear: the stacked Linear layers of architectures that fix activation: linear (the closed-form reference nets)
FAMILIES = ("symmetric", "encoder-heavy", "decoder-heavy", "linear", "conv-symmetric", "conv-encoder", "conv-decoder")
NAME_PATTERN = r"[a-z0-9][a-z0-9_-]*"
RUN_ID_PATTERN = re.compile(
    rf"(?P<dataset>{NAME_PATTERN})/(?P<kind>ae|vae)/(?P<arch>{NAME_PATTERN})"
    rf"/z(?P<bottleneck>[0-9]+)/(?P<activation>{NAME_PATTERN})/s(?P<seed>[0-9]+)"
)


class ConfigError(ValueError):
    """A study config that cannot be run; the message names the key and the allowed values."""


class StudyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading floats as YAML 1.2 does.

    PyYAML implements YAML 1.1, where a float needs a dot and a signed exponent: ``1e-2``, ``1E-3``, ``5e+1`` and
    ``1.0e5`` are strings there, and ``lr: 1e-2`` failed as "'1e-2' is not of type 'number'".
    """


# tried after YAML 1.1's own float and int patterns, which match none of these
StudyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(path) -> object:
    """A study config file (or the schema) as data, with ``StudyLoader``: how every reader of a study reads it."""
    with open(path) as fh:
        return yaml.load(fh, Loader=StudyLoader)


class Run(TypedDict):
    """One run of the study, resolved (``resolve_run``): everything its training depends on, so that the hash of
    the dict (``config_hash``) identifies its inputs. Jobs receive runs as Snakemake params, as plain dicts."""

    run_id: str  # <dataset>/<kind>/<arch>/z<bottleneck>/<activation>/s<seed>, also its folder under results/runs/
    dataset: str
    kind: str  # ae or vae
    arch: str  # a key of the study's architectures
    family: str
    encoder: list[int | dict]  # hidden layers before the bottleneck layer: widths, or convolutions (architectures)
    decoder: list[int | dict]  # hidden layers after it
    bottleneck: int
    activation: str
    seed: int
    training: dict  # the study's training section
    vae: NotRequired[dict]  # the study's vae section, for a VAE only
    input_shape: NotRequired[list[int]]  # (C, H, W) of the input, for a net with convolutions only
    freeze: NotRequired[str]  # a freeze variant's spec (nets.interventions.freeze_variant); absent: none


def cell_id(dataset: str, kind: str, arch: str, bottleneck: int, activation: str) -> str:
    return f"{dataset}/{kind}/{arch}/z{bottleneck}/{activation}"


def run_cell(run: Run) -> str:
    """The grid cell of a run: its id without the seed (every seed of a cell shares one train job)."""
    return cell_id(run["dataset"], run["kind"], run["arch"], run["bottleneck"], run["activation"])


def run_group(run: Run) -> str:
    """The intervention group of a run: every architecture and seed of one data set, kind, bottleneck, activation
    (criticality and stitching run one job per group)."""
    return f"{run['dataset']}/{run['kind']}/z{run['bottleneck']}/{run['activation']}"


def run_id(dataset: str, kind: str, arch: str, bottleneck: int, activation: str, seed: int) -> str:
    return f"{cell_id(dataset, kind, arch, bottleneck, activation)}/s{seed}"


def parse_run_id(rid: str) -> dict:
    """Split a run id into its parts; anything the grid cannot have made is refused."""
    match = RUN_ID_PATTERN.fullmatch(rid)
    if match is None:
        raise ConfigError(f"not a run id: {rid!r} (expected {RUN_ID_PATTERN.pattern})")
    parts = match.groupdict()
    parts["bottleneck"] = int(parts["bottleneck"])
    parts["seed"] = int(parts["seed"])
    return parts


def check_semantics(config: dict) -> None:
    """Checks a JSON schema cannot express: cross-references between keys."""
    archs = config["architectures"]
    for name, arch in archs.items():
        if not re.fullmatch(NAME_PATTERN, name):
            raise ConfigError(f"architectures.{name}: name must match {NAME_PATTERN}")
        shapes_by_dataset = {dataset: arch_shapes(config, name, dataset) for dataset in config["datasets"]}
        if not config.get("allow_wide_bottleneck", False):
            for dataset, shapes in shapes_by_dataset.items():
                before = flat_width(shapes[len(arch["encoder"])]) if arch["encoder"] else None
                for z in config["bottlenecks"]:
                    if before is not None and z > before:
                        raise ConfigError(
                            f"config key bottlenecks: {z} is wider than the last encoder layer of "
                            f"architectures.{name} ({before} on {dataset}); set allow_wide_bottleneck: true to allow it"
                        )
    vae = config.get("vae") or {}
    if vae.get("logvar_init") == "likelihood" and vae.get("likelihood") != "gaussian":
        raise ConfigError(
            f"config key vae.logvar_init: 'likelihood' starts the log-variance at log(sigma^2) of a Gaussian "
            f"likelihood; vae.likelihood is {vae.get('likelihood')!r} (remove vae.logvar_init)"
        )
    for key in ("datasets", "model_kinds", "bottlenecks", "activations", "seeds"):
        values = config[key]
        if len(set(map(str, values))) != len(values):
            raise ConfigError(f"config key {key}: duplicate entries in {values}")
    # a selection naming something the study does not have would silently select less (a typo in an
    # architecture name would drop it from the truncation or fall back to the default freeze sweep)
    study_values = {key: list(config[key]) for key in ("datasets", "model_kinds", "bottlenecks")}
    study_values["activations"] = all_activations(config)  # those the architectures fix may be selected too
    study_values["architectures"] = list(archs)
    selections = [(f"truncation.select.{key}", values, key) for key, values in config["truncation"]["select"].items()]
    selections += [
        (f"interventions.cells.{key}", values, key) for key, values in config["interventions"]["cells"].items()
    ]
    selections.append(("interventions.freeze.k", list(config["interventions"]["freeze"]["k"]), "architectures"))
    for path, values, key in selections:
        unknown = [v for v in values or [] if v not in study_values[key]]
        if unknown:
            raise ConfigError(f"config key {path}: {unknown} not in the study's {key} {study_values[key]}")


def input_shape(config: dict, arch: str, dataset: str) -> list[int] | None:
    """The (C, H, W) a net with convolutions reshapes its input rows to (None for a dense net): the data set's
    image shape, a grey image with one channel. A conv architecture on a data set without images is a
    ``ConfigError`` naming both."""
    if not has_conv(config["architectures"][arch]):
        return None
    shape = image_channels_first(REGISTRY[dataset].image_shape(data_options(dataset, config["data"])))
    if len(shape) != 3:
        raise ConfigError(
            f"architectures.{arch} has convolutions, and data set {dataset} has no images: train it on image data "
            "sets only (a study of its own, or datasets: without this one)"
        )
    return list(shape)


def arch_shapes(config: dict, arch: str, dataset: str) -> list[tuple[int, ...]]:
    """The shape of one sample at every cut of an architecture on a data set (``architectures.cut_shapes``); a
    layer that does not fit is a ``ConfigError`` naming the architecture's key and the layer."""
    spec = config["architectures"][arch]
    shape = input_shape(config, arch, dataset) or [input_size(dataset, config["data"])]
    z = max(config["bottlenecks"])
    try:
        return cut_shapes(spec["encoder"], z, spec["decoder"], shape, f"architectures.{arch}")
    except ArchitectureError as err:
        raise ConfigError(f"{err} (data set {dataset}, input {tuple(shape)})") from None


def arch_activations(config: dict, arch: str) -> list[str]:
    """The activations an architecture is trained with: its own ``activation`` when it fixes one, else the study's
    ``activations``.

    An architecture that fixes its activation is trained once with it, whatever the study's ``activations``; its
    run ids carry that activation as their activation segment (``digits/ae/linear/z4/linear/s0``), so the segment
    always names the activation the network has, and it never repeats under each study activation.
    """
    own = config["architectures"][arch].get("activation")
    return [own] if own is not None else list(config["activations"])


def all_activations(config: dict) -> list[str]:
    """Every activation some run of the study has: the study's, then those the architectures fix, in order."""
    acts = [act for arch in config["architectures"] for act in arch_activations(config, arch)]
    return list(dict.fromkeys([*config["activations"], *acts]))


def grid(config: dict) -> list[Run]:
    """Every run of the study as its resolved config, in a stable order."""
    runs = []
    for dataset, kind, arch, z in itertools.product(
        config["datasets"], config["model_kinds"], config["architectures"], config["bottlenecks"]
    ):
        for act, seed in itertools.product(arch_activations(config, arch), config["seeds"]):
            runs.append(resolve_run(config, dataset, kind, arch, z, act, seed))
    return runs


def resolve_run(config: dict, dataset: str, kind: str, arch: str, bottleneck: int, activation: str, seed: int) -> Run:
    spec = config["architectures"][arch]
    if spec.get("activation") not in (None, activation):
        raise ConfigError(
            f"architectures.{arch} fixes activation {spec['activation']!r}: it has no run with {activation!r}"
        )
    run: Run = {
        "run_id": run_id(dataset, kind, arch, bottleneck, activation, seed),
        "dataset": dataset,
        "kind": kind,
        "arch": arch,
        "family": spec["family"],
        "encoder": list(spec["encoder"]),
        "decoder": list(spec["decoder"]),
        "bottleneck": int(bottleneck),
        "activation": activation,
        "seed": int(seed),
        "training": copy.deepcopy(config["training"]),
    }
    shape = input_shape(config, arch, dataset)
    if shape is not None:  # only conv nets carry it: a dense run's config (and its hash) stays what it was
        run["input_shape"] = shape
    if kind == "vae":
        run["vae"] = copy.deepcopy(config["vae"])
    return run


def typed_overrides(values):
    """``--config`` values with their YAML types: Snakemake reads the items of a list or mapping given on the
    command line with YAML's base loader, as strings (``seeds=[0,1]`` gives ``['0', '1']``)."""
    if isinstance(values, Mapping):
        return {key: typed_overrides(value) for key, value in values.items()}
    if isinstance(values, list):
        return [typed_overrides(value) for value in values]
    if isinstance(values, str):
        try:
            return yaml.load(values, Loader=StudyLoader)
        except yaml.YAMLError:
            return values
    return values


def canonical(obj):
    """The same data with every mapping's keys sorted (JSON round trip)."""
    return json.loads(json.dumps(obj, sort_keys=True))


def config_hash(run: dict) -> str:
    return hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()[:16]


def config_columns(run: Run) -> dict:
    """The flat config columns every tidy table carries for a run."""
    training = run["training"]
    vae = run.get("vae", {})
    return {
        "run_id": run["run_id"],
        "dataset": run["dataset"],
        "kind": run["kind"],
        "arch": run["arch"],
        "family": run["family"],
        "encoder": labels(run["encoder"]),
        "decoder": labels(run["decoder"]),
        "bottleneck": run["bottleneck"],
        "activation": run["activation"],
        "seed": run["seed"],
        "epochs": training["epochs"],
        "batch_size": training["batch_size"],
        "lr": training["lr"],
        "beta": vae.get("beta", float("nan")),
        "likelihood": vae.get("likelihood", "mse"),
        "config_hash": config_hash(run),
    }


def _with_defaults(validator_class):
    """A validator that also fills in each property's schema default (the jsonschema FAQ recipe)."""
    from jsonschema import validators

    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


def _check(schema: dict, instance: dict, prefix: tuple = (), what: str = "invalid study config") -> None:
    """Fill the schema's defaults into ``instance``; raise ConfigError, headed ``what``, naming every bad key as a
    dotted path."""
    from jsonschema import Draft202012Validator

    validator = _with_defaults(Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError(f"{what}:\n  " + "\n  ".join(_error_lines(errors, prefix)))


def _error_lines(errors, prefix: tuple) -> list[str]:
    """One line per schema error, naming its key as a dotted path. Unknown keys come first, each with the nearest
    valid key (jsonschema says only "Additional properties are not allowed"); a misspelt required key is then not
    also reported missing."""
    lines, explained = [], set()
    unknown = [err for err in errors if err.validator == "additionalProperties" and err.validator_value is False]
    for err in unknown:
        section = ".".join(map(str, (*prefix, *err.absolute_path)))
        where = f"in {section}" if section else "at the top level"
        known = list(err.schema.get("properties", {}))
        for name in [name for name in err.instance if name not in known]:
            nearest = difflib.get_close_matches(str(name), known, n=1)
            if nearest:
                lines.append(f"unknown key `{name}` {where}: did you mean `{nearest[0]}`?")
                explained.add((section, f"{nearest[0]!r} is a required property"))  # jsonschema's wording
            else:
                lines.append(f"unknown key `{name}` {where}; the keys there are {', '.join(known)}")
    for err in errors:
        section = ".".join(map(str, (*prefix, *err.absolute_path)))
        if err not in unknown and (section, err.message) not in explained:
            message = err.message
            if err.validator == "oneOf":  # a layer: say what each form wants, not only "not valid under any"
                message += " (" + "; or ".join(sub.message for sub in err.context) + ")"
            lines.append(f"config key {section or '(top level)'}: {message}")
    return lines


def _schema(schema_path) -> dict:
    return load_yaml(schema_path)


def validate(config: dict, schema_path=SCHEMA_PATH) -> dict:
    """Check a study config against the schema and the cross-key rules; fill defaults in place.

    Raises ConfigError naming the config key (as a dotted path) and what is allowed.
    """
    _check(_schema(schema_path), config)
    check_semantics(config)
    return config


def read_study(path) -> dict:
    """A study config file, validated (defaults filled in); ConfigError names the file, then the key."""
    path = Path(path)
    try:
        raw = load_yaml(path)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read it ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a study config is a mapping of keys, not {type(raw).__name__}")
    try:
        return validate(raw)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def section(name: str, values: dict | None = None, schema_path=SCHEMA_PATH) -> dict:
    """One top-level section of a study config (e.g. ``truncation``): ``values`` over the schema's defaults,
    checked like a whole config, so that code outside the workflow gets the same defaults and errors."""
    values = copy.deepcopy(values or {})
    _check(_schema(schema_path)["properties"][name], values, (name,), f"invalid {name}: options")
    return values
