import copy
import re

import pytest

from aedissect import config
from conftest import REPO, SCHEMA, load_yaml, planned_jobs, snakemake


@pytest.fixture
def default_config():
    return load_yaml(REPO / "config.yaml")


def check(cfg):
    return config.validate(copy.deepcopy(cfg), SCHEMA)


def test_default_and_tiny_configs_are_valid(default_config, tiny_config):
    check(default_config)
    check(tiny_config)


def test_default_study_covers_what_the_paper_needs(default_config):
    runs = config.grid(check(default_config))
    families = {run["family"] for run in runs}
    assert families == {"symmetric", "encoder-heavy", "decoder-heavy", "linear"}
    assert {"digits", "factors"} <= {run["dataset"] for run in runs}
    assert {run["kind"] for run in runs} == {"ae", "vae"}
    assert len(default_config["architectures"]) >= 4 and len(default_config["bottlenecks"]) >= 2
    assert len(default_config["seeds"]) >= 3
    assert any(not a["encoder"] or not a["decoder"] for a in default_config["architectures"].values())


def test_run_ids_are_unique_readable_and_parse_back(default_config):
    runs = config.grid(check(default_config))
    ids = [run["run_id"] for run in runs]
    assert len(set(ids)) == len(ids)
    assert "digits/vae/enc-heavy/z8/relu/s0" in ids
    for run in runs:
        parts = config.parse_run_id(run["run_id"])
        assert parts == {k: run[k] for k in ("dataset", "kind", "arch", "bottleneck", "activation", "seed")}


@pytest.mark.parametrize(
    "rid",
    [
        "../../etc/passwd",
        "digits/ae/../../x/z4/relu/s0",
        "digits/ae/sym/z4/relu/s0/..",
        "/digits/ae/sym/z4/relu/s0",
        "digits/gan/sym/z4/relu/s0",
    ],
)
def test_run_ids_the_grid_cannot_make_are_refused(rid):
    with pytest.raises(config.ConfigError, match="not a run id"):
        config.parse_run_id(rid)


def test_defaults_are_filled(tiny_config):
    tiny_config["training"].pop("weight_decay", None)
    tiny_config["vae"].pop("sigma", None)
    cfg = check(tiny_config)
    assert cfg["training"]["weight_decay"] == 0.0
    assert cfg["vae"]["sigma"] == 0.1
    assert cfg["data"]["shapes"] == {"size": 32, "n_samples": 10000, "antialias": False, "seed": 0}
    assert cfg["data"]["mnist1d"] == {"n_samples": 5000, "seed": 42}
    assert cfg["logging"] == {"tensorboard": False}


def minimal_study() -> dict:
    """Only the keys that have no default: no data, vae or figures section."""
    return {
        "datasets": ["digits"],
        "model_kinds": ["ae"],
        "architectures": {"sym": {"family": "symmetric", "encoder": [16], "decoder": [16]}},
        "bottlenecks": [4],
        "activations": ["relu"],
        "seeds": [0],
        "training": {"epochs": 2, "batch_size": 32, "lr": 0.01},
    }


def test_sections_a_study_leaves_out_take_the_schema_defaults():
    cfg = check(minimal_study())
    assert cfg["data"] == {
        "root": "data",
        "download": False,
        "test_fraction": 0.2,
        "split_seed": 0,
        "max_train_samples": None,
        "factors": {"n_samples": 4000, "n_factors": 4, "dim": 32, "map_hidden": 64, "noise_std": 0.03, "seed": 0},
        "shapes": {"size": 32, "n_samples": 10000, "antialias": False, "seed": 0},
        "mnist1d": {"n_samples": 5000, "seed": 42},
    }
    assert cfg["vae"] == {"beta": 1.0, "likelihood": "gaussian", "sigma": 0.1}
    assert cfg["figures"] == {"n_examples": 6, "dpi": 200}
    assert [run["run_id"] for run in config.grid(cfg)] == ["digits/ae/sym/z4/relu/s0"]
    assert "vae" not in config.grid(cfg)[0]  # an AE's run config, and so its hash, has no vae section
    cfg = check(minimal_study() | {"model_kinds": ["vae"], "vae": {"likelihood": "bernoulli"}})
    assert cfg["vae"] == {"beta": 1.0, "likelihood": "bernoulli", "sigma": 0.1}


def test_a_config_that_writes_every_key_keeps_its_run_configs(default_config):
    """The default study writes every key of training and vae, the sections a run's config (and hash) holds, and
    every data key its data sets depend on: validating fills none of them in, so schema defaults added later
    cannot change its run ids, hashes or prepare_data params."""
    from aedissect import datasets

    cfg = check(default_config)
    for run in config.grid(cfg):
        assert run["training"] == default_config["training"]
        assert run.get("vae", default_config["vae"]) == default_config["vae"]
    for dataset in cfg["datasets"]:
        assert datasets.data_options(dataset, cfg["data"]) == datasets.data_options(dataset, default_config["data"])


@pytest.mark.parametrize("written,value", [("1e-2", 0.01), ("1E-3", 0.001), ("5e+1", 50.0), ("1.0e5", 1e5)])
def test_numbers_with_an_exponent_are_numbers(tmp_path, written, value):
    """PyYAML's YAML 1.1 reads 1e-2 (no dot) and 1.0e5 (no sign) as strings; study configs are read as YAML 1.2."""
    text = (REPO / "tests" / "tiny_config.yaml").read_text()
    text, n = re.subn(r"(?m)^(  lr:) .*$", rf"\1 {written}", text)
    assert n == 1
    path = tmp_path / "study.yaml"
    path.write_text(text)
    cfg = check(load_yaml(path))
    assert cfg["training"]["lr"] == value and isinstance(cfg["training"]["lr"], float)
    assert config.load_yaml(path)["training"]["lr"] == value
    assert config.typed_overrides({"training": {"lr": written}}) == {"training": {"lr": value}}  # --config


UNKNOWN_KEYS = [
    (
        lambda c: c.update(bottleneck=c.pop("bottlenecks")),
        "unknown key `bottleneck` at the top level: did you mean `bottlenecks`?",
    ),
    (
        lambda c: c["training"].update(epoch=c["training"].pop("epochs")),
        "unknown key `epoch` in training: did you mean `epochs`?",
    ),
    (
        lambda c: c["data"].update(shapes={"antialiased": True}),
        "unknown key `antialiased` in data.shapes: did you mean `antialias`?",
    ),
    (
        lambda c: c["architectures"]["sym"].update(famly="symmetric"),
        "unknown key `famly` in architectures.sym: did you mean `family`?",
    ),
    (
        lambda c: c.update(learning_rate=0.1),
        "unknown key `learning_rate` at the top level; the keys there are datasets, data, model_kinds,",
    ),
]


@pytest.mark.parametrize("mutate,message", UNKNOWN_KEYS, ids=[m.split("`")[1] for _, m in UNKNOWN_KEYS])
def test_an_unknown_key_is_answered_with_the_nearest_valid_key(tiny_config, mutate, message):
    mutate(tiny_config)
    with pytest.raises(config.ConfigError) as err:
        check(tiny_config)
    assert message in str(err.value)
    assert "is a required property" not in str(err.value)  # the misspelt key is not reported missing too
    assert "Additional properties" not in str(err.value)


BAD = [
    ("wrong type", lambda c: c["training"].update(epochs="ten"), "training.epochs", "integer"),
    ("zero epochs", lambda c: c["training"].update(epochs=0), "training.epochs", "minimum"),
    ("negative lr", lambda c: c["training"].update(lr=-1.0), "training.lr", "0"),
    ("zero width", lambda c: c["architectures"]["sym"].update(encoder=[0]), "architectures.sym.encoder.0", "minimum"),
    ("unknown data set", lambda c: c.update(datasets=["imagenet"]), "datasets.0", "digits"),
    ("unknown activation", lambda c: c.update(activations=["swish"]), "activations.0", "relu"),
    ("unknown kind", lambda c: c.update(model_kinds=["gan"]), "model_kinds.0", "vae"),
    ("unknown likelihood", lambda c: c["vae"].update(likelihood="poisson"), "vae.likelihood", "bernoulli"),
    ("empty seeds", lambda c: c.update(seeds=[]), "seeds", "non-empty"),
    ("tensorboard not a boolean", lambda c: c.update(logging={"tensorboard": "yes"}), "logging.tensorboard", "boolean"),
    ("duplicate seeds", lambda c: c.update(seeds=[1, 1]), "seeds", "non-unique"),
    (
        "unknown family",
        lambda c: c["architectures"]["sym"].update(family="wide"),
        "architectures.sym.family",
        "symmetric",
    ),
    (
        "bad arch name",
        lambda c: c["architectures"].update({"Bad/Name": c["architectures"]["sym"]}),
        "architectures",
        "does not match",
    ),
    ("bad device", lambda c: c["training"].update(device="tpu"), "training.device", "cuda"),
    ("shapes too small", lambda c: c["data"].update(shapes={"size": 4}), "data.shapes.size", "minimum of 8"),
    (
        "shapes sample beyond the grid",
        lambda c: c["data"].update(shapes={"n_samples": 10**6}),
        "data.shapes.n_samples",
        "maximum of 737280",
    ),
    (
        "mnist1d classes unbalanced",
        lambda c: c["data"].update(mnist1d={"n_samples": 105}),
        "data.mnist1d.n_samples",
        "multiple of 10",
    ),
    ("duplicate bottlenecks", lambda c: c.update(bottlenecks=[3, 3]), "bottlenecks", "non-unique"),
    (
        "freeze k for an architecture the study lacks",
        lambda c: c["interventions"]["freeze"].update(k={"symm": [1]}),
        "interventions.freeze.k",
        "['symm'] not in the study's architectures ['sym', 'enc-heavy', 'dec-heavy']",
    ),
    (
        "truncation of an architecture the study lacks",
        lambda c: c["truncation"].update(select={"architectures": ["sym", "wide"]}),
        "truncation.select.architectures",
        "['wide'] not in the study's architectures",
    ),
    (
        "freeze cells outside the study",
        lambda c: c["interventions"]["cells"].update(bottlenecks=[16]),
        "interventions.cells.bottlenecks",
        "[16] not in the study's bottlenecks [3]",
    ),
    (
        "frozen_output_bias not a boolean",
        lambda c: c["interventions"]["freeze"].update(frozen_output_bias="yes"),
        "interventions.freeze.frozen_output_bias",
        "boolean",
    ),
    ("unknown lr schedule", lambda c: c["training"].update(lr_schedule="step"), "training.lr_schedule", "cosine"),
    ("unknown init", lambda c: c["training"].update(init="xavier"), "training.init", "centred"),
    ("negative kl warm-up", lambda c: c["vae"].update(kl_warmup_epochs=-1), "vae.kl_warmup_epochs", "minimum of 0"),
    ("fractional kl warm-up", lambda c: c["vae"].update(kl_warmup_epochs=2.5), "vae.kl_warmup_epochs", "integer"),
    ("unknown logvar init", lambda c: c["vae"].update(logvar_init="zero"), "vae.logvar_init", "likelihood"),
    (
        "logvar init without a Gaussian likelihood",
        lambda c: c["vae"].update(logvar_init="likelihood", likelihood="bernoulli"),
        "vae.logvar_init",
        "vae.likelihood is 'bernoulli'",
    ),
    (
        "unknown architecture activation",
        lambda c: c["architectures"]["sym"].update(activation="swish"),
        "architectures.sym.activation",
        "linear",
    ),
    (
        "symmetric freezing not a boolean",
        lambda c: c["interventions"]["freeze"].update(symmetric="yes"),
        "interventions.freeze.symmetric",
        "boolean",
    ),
    (
        "code map not a boolean",
        lambda c: c["interventions"]["freeze"].update(code_map=1),
        "interventions.freeze.code_map",
        "boolean",
    ),
    (
        "log-variance head not a boolean",
        lambda c: c["interventions"]["freeze"].update(logvar_head="no"),
        "interventions.freeze.logvar_head",
        "boolean",
    ),
    (
        "unknown freeze side",
        lambda c: c["interventions"]["freeze"].update(sides=["middle"]),
        "interventions.freeze.sides.0",
        "prefix",
    ),
    (
        "no sweep seeds",
        lambda c: c["interventions"]["freeze"].update(sweep_seeds=0),
        "interventions.freeze.sweep_seeds",
        "minimum of 1",
    ),
    (
        "sweep seeds not a count",
        lambda c: c["interventions"]["freeze"].update(sweep_seeds=[0, 1]),
        "interventions.freeze.sweep_seeds",
        "not of type",
    ),
]


@pytest.mark.parametrize("name,mutate,key,allowed", BAD, ids=[b[0] for b in BAD])
def test_schema_rejects_bad_configs_naming_the_key(tiny_config, name, mutate, key, allowed):
    mutate(tiny_config)
    with pytest.raises(config.ConfigError) as err:
        check(tiny_config)
    message = str(err.value)
    assert f"config key {key}" in message
    assert allowed in message


def test_keys_added_without_a_default_keep_the_run_hashes_of_configs_without_them(tiny_config):
    """training.lr_schedule, training.init, vae.kl_warmup_epochs and vae.logvar_init have no schema default:
    validating a config that does not set them adds nothing to its runs, so their config hashes (and results)
    stay what they were."""
    vae = next(run for run in config.grid(check(tiny_config)) if run["kind"] == "vae")
    assert "kl_warmup_epochs" not in vae["vae"] and "logvar_init" not in vae["vae"]
    assert "lr_schedule" not in vae["training"] and "init" not in vae["training"]
    tiny_config["vae"]["kl_warmup_epochs"] = 0
    warm = next(run for run in config.grid(check(tiny_config)) if run["kind"] == "vae")
    assert config.config_hash(warm) != config.config_hash(vae)  # set, even to 0, it is part of the run


def test_bottleneck_wider_than_the_layer_before_is_refused_unless_allowed(tiny_config):
    tiny_config["bottlenecks"] = [20]
    with pytest.raises(
        config.ConfigError, match=r"config key bottlenecks: 20 is wider .*architectures.sym.*allow_wide_bottleneck"
    ):
        check(tiny_config)
    tiny_config["allow_wide_bottleneck"] = True
    check(tiny_config)


def test_snakemake_refuses_a_bad_config_before_any_job(tmp_path, tiny_config):
    import yaml

    tiny_config["training"]["epochs"] = -1
    tiny_config["datasets"] = ["digits", "svhn"]
    tiny_config["vae"]["betta"] = tiny_config["vae"].pop("beta")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    proc = snakemake(tmp_path / "wd", "--cores", "1", configfile=path, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "config key training.epochs" in out and "config key datasets.1" in out and "'svhn'" in out
    assert "unknown key `betta` in vae: did you mean `beta`?" in out
    assert not (tmp_path / "wd" / "results").exists()


def test_missing_data_files_stop_the_run_before_any_job(tmp_path, tiny_config):
    import yaml

    tiny_config.update(datasets=["mnist"], interventions={})
    tiny_config["data"]["root"] = str(tmp_path / "no-data")
    path = tmp_path / "mnist.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    assert "prepare_data" in planned_jobs(tmp_path / "wd", configfile=path)  # a dry run reads nothing
    proc = snakemake(tmp_path / "wd", "--cores", "1", configfile=path, check=False)
    assert proc.returncode != 0
    missing = tmp_path / "no-data" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    assert f"data set 'mnist': {missing} not found and 3 more files there" in proc.stdout + proc.stderr
    assert "data.root" in proc.stdout + proc.stderr and not (tmp_path / "wd" / "results").exists()


def test_command_line_overrides_are_typed_like_a_config_file():
    assert config.typed_overrides({"seeds": ["0", "1"], "training": {"epochs": "5", "lr": "0.5"}}) == {
        "seeds": [0, 1],
        "training": {"epochs": 5, "lr": 0.5},
    }
    assert config.typed_overrides({"datasets": ["digits"], "data": {"root": "[oops"}}) == {
        "datasets": ["digits"],
        "data": {"root": "[oops"},  # not YAML: kept as given
    }


def test_snakemake_applies_config_overrides_with_their_types(tmp_path):
    both = planned_jobs(tmp_path / "a")
    one = planned_jobs(
        tmp_path / "b", "--config", "datasets=[digits]", "seeds=[0, 1]", "training={epochs: 2, lr: 1e-3}"
    )
    assert one["train"] * 2 == both["train"]  # the factors cells are gone; the lists were read as lists
    proc = snakemake(tmp_path / "c", "-n", "--config", "training={epochs: 0}", check=False)
    assert proc.returncode != 0
    assert "config key training.epochs: 0 is less than the minimum of 1" in proc.stdout + proc.stderr


# ---------------------------------------------------------------- the config reference (docs/config.md)


def test_docs_config_is_the_reference_rendered_from_the_schema():
    from aedissect import config_reference

    rendered = config_reference.render(load_yaml(SCHEMA))
    assert (REPO / "docs" / "config.md").read_text() == rendered, (
        "docs/config.md differs from the schema's descriptions: aedissect config-reference > docs/config.md"
    )


def test_every_schema_key_has_a_description_and_a_row_in_the_reference():
    from aedissect import config_reference

    schema = load_yaml(SCHEMA)
    assert config_reference.missing_descriptions(schema) == []
    paths = [path for path, _, _ in config_reference.properties(schema)]
    assert "architectures.<name>.family" in paths and "interventions.freeze.k" in paths
    page = config_reference.render(schema)
    for path in paths:
        assert f"| `{path}` |" in page or f"## `{path}`" in page, path


def test_config_reference_check_fails_on_a_stale_page(tmp_path, capsys):
    from aedissect import cli

    assert cli.main(["config-reference", "--check"]) == 0
    stale = tmp_path / "config.md"
    stale.write_text((REPO / "docs" / "config.md").read_text().replace("PNG resolution", "resolution"))
    assert cli.main(["config-reference", "--check", "--file", str(stale)]) == 1
    assert "aedissect config-reference > " in capsys.readouterr().err
    assert cli.main(["config-reference"]) == 0
    assert capsys.readouterr().out == (REPO / "docs" / "config.md").read_text()


def test_every_enum_value_is_listed_in_the_reference():
    """The allowed values of every key with a fixed set (architectures.<name>.family among them) are in its row."""
    from aedissect import config_reference

    page = (REPO / "docs" / "config.md").read_text()
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in page.splitlines() if line.startswith("| `")}

    def enums(node):
        """The enums of one key: its own and its items' or values' (sub-keys have their own rows)."""
        found = [node["enum"]] if "enum" in node else []
        for sub in (node.get("items"), node.get("additionalProperties")):
            if isinstance(sub, dict) and "properties" not in sub:
                found += enums(sub)
        return found

    checked = 0
    for path, node, _ in config_reference.properties(load_yaml(SCHEMA)):
        for values in enums(node):
            for value in values:
                assert f"`{value}`" in rows[f"`{path}`"], (path, value)
                checked += 1
    assert checked > 30
    for family in config.FAMILIES:
        assert f"`{family}`" in rows["`architectures.<name>.family`"]


def minimal_study_block() -> str:
    """The YAML block under "A minimal study" in docs/config.md."""
    page = (REPO / "docs" / "config.md").read_text()
    match = re.search(r"^## A minimal study\n.*?^```yaml\n(.*?)^```$", page, flags=re.M | re.S)
    assert match, "docs/config.md has no yaml block under '## A minimal study'"
    return match.group(1)


def test_the_minimal_study_in_the_reference_is_valid_and_plans(tmp_path):
    path = tmp_path / "minimal.yaml"
    path.write_text(minimal_study_block())
    raw = load_yaml(path)
    assert set(raw) == {"datasets", "model_kinds", "architectures", "bottlenecks", "activations", "seeds", "training"}
    cfg = check(raw)
    runs = config.grid(cfg)
    assert {run["dataset"] for run in runs} == {"digits"} and {run["kind"] for run in runs} == {"ae"}
    assert len(cfg["architectures"]) == 2 and len(cfg["bottlenecks"]) == 1 and len(cfg["seeds"]) == 3
    assert len(runs) == 6 and cfg["training"]["lr"] == 0.01  # written 1e-2
    for family in config.FAMILIES:  # its comment names every family
        assert family in minimal_study_block()
    jobs = planned_jobs(tmp_path / "wd", configfile=path)
    assert jobs["train"] == 2 and jobs["prepare_data"] == 1  # one job per cell, the seeds together
