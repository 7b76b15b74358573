"""The pinned conda envs and the venv's lock pin the same versions; every rule's script imports only what its env
holds; Snakemake alone, without the package's dependencies, reads the workflow."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.markers import Marker

from aedissect import workflow_rules
from conftest import REPO, TINY_CONFIG, load_yaml, planned_jobs, snakemake

LOCK = REPO / "requirements.txt"
PACKAGE_LINE = re.compile(r"([A-Za-z0-9_.-]+)==([^\s;]+)(?: ; (.+?))? \\")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def direct_requirements() -> dict:
    """requirements.in: the venv's direct requirements, name -> version."""
    pins = {}
    for line in (REPO / "requirements.in").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[normalized(name)] = version
    return pins


def lock_entries() -> list[dict]:
    """requirements.txt as written by ``uv pip compile --generate-hashes``: per package line its name, version,
    environment marker, hashes and the packages that require it (``# via``)."""
    entries = []
    for line in LOCK.read_text().splitlines():
        package = PACKAGE_LINE.fullmatch(line)
        if package:
            name, version, marker = package.groups()
            entries.append({"name": normalized(name), "version": version, "marker": marker, "hashes": [], "via": []})
        elif line.startswith("    --hash=sha256:"):
            entries[-1]["hashes"].append(line.split(":", 1)[1].rstrip(" \\"))
        elif re.match(r"    # via \S|    #   \S", line):
            entries[-1]["via"].append(normalized(line.split()[-1]))
        else:
            assert line.startswith("#") or line in ("", "    # via"), f"requirements.txt: cannot read {line!r}"
    return entries


def conda_pins(env: Path) -> dict:
    """The env's conda packages: name -> version."""
    return dict(dep.split("=", 1) for dep in load_yaml(env)["dependencies"] if isinstance(dep, str))


def env_pins(env: Path) -> dict:
    """The env's pip packages: name -> version."""
    pins = {}
    for dep in load_yaml(env)["dependencies"]:
        for entry in dep["pip"] if isinstance(dep, dict) else []:
            name, version = entry.split("==")
            pins[normalized(name)] = version
    return pins


def locked_closure(roots, platform: dict) -> dict:
    """Name -> version of ``roots`` and everything they require, transitively, in the lock, on ``platform`` (the
    marker variables of one interpreter): what pip installs for them there."""
    entries = [e for e in lock_entries() if e["marker"] is None or Marker(e["marker"]).evaluate(platform)]
    versions = {e["name"]: e["version"] for e in entries}
    assert len(versions) == len(entries), "requirements.txt pins a package twice for one platform"
    closure, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name not in closure:
            closure.add(name)
            todo += [e["name"] for e in entries if name in e["via"]]
    return {name: versions[name] for name in closure}


def linux_64(python: str) -> dict:
    """The marker variables of a conda env's CPython on linux-64."""
    return {
        "python_version": python.rsplit(".", 1)[0],
        "python_full_version": python,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }


def test_the_lock_pins_and_hashes_every_package_and_holds_requirements_in():
    entries = lock_entries()
    assert len(entries) > 50  # the whole closure, not the direct requirements alone
    for entry in entries:
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!]*", entry["version"]), entry
        assert entry["hashes"] and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in entry["hashes"]), entry["name"]
        assert entry["via"], f"requirements.txt: nothing requires {entry['name']}"
    locked = {e["name"]: e["version"] for e in entries}
    for name, version in direct_requirements().items():
        assert locked.get(name) == version, f"requirements.in: {name}=={version}, requirements.txt: {locked.get(name)}"
    assert "-r requirements.in" in LOCK.read_text(), "requirements.txt was not compiled from requirements.in"


def test_envs_are_fully_pinned_to_the_locked_versions():
    """Each env holds exactly its direct packages and everything they require, at the lock's versions for the
    env's own python on linux-64; conda installs only an exact python and pip, from conda-forge alone."""
    direct = direct_requirements()
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        spec = load_yaml(env)
        assert spec["channels"] == ["conda-forge", "nodefaults"], env.name
        conda = conda_pins(env)
        assert sorted(conda) == ["pip", "python"], env.name
        assert all(re.fullmatch(r"\d+(\.\d+)+", version) for version in conda.values()), f"{env.name}: {conda}"
        pins = env_pins(env)
        roots = [name for name in pins if name in direct]
        assert roots, env.name
        expected = locked_closure(roots, linux_64(conda["python"]))
        missing = {name: v for name, v in expected.items() if name not in pins}
        extra = sorted(set(pins) - set(expected))
        assert not missing and not extra, f"{env.name}: add {missing}, remove {extra} (the closure in requirements.txt)"
        for name, version in pins.items():
            assert version == expected[name], f"{env.name}: {name}=={version} but requirements.txt has {expected[name]}"


def test_every_rule_that_runs_a_script_names_an_existing_env():
    rules = workflow_rules.parsed_rules()
    for name, rule in rules.items():
        assert (rule.env is None) == (rule.script is None), f"rule {name}: a script needs an env, a target none"
        assert rule.env is None or (REPO / rule.env).exists(), f"rule {name} uses missing {rule.env}"


def test_rules_are_told_apart_by_the_env_snakemake_parsed():
    """A rule made with ``use rule X as Y with:`` has no ``conda:`` line of its own: its env is X's all the same."""
    torch = workflow_rules.torch_rules()
    assert {"prepare_data", "train", "freeze", "criticality", "stitching", "truncate", "phantoms", "controls"} == torch
    assert "use rule criticality as stitching" in (REPO / "workflow" / "rules" / "interventions.smk").read_text()
    assert workflow_rules.local_rules() == {"check_training"}
    assert workflow_rules.torch_rules(TINY_CONFIG) == torch  # the rules do not depend on the study


# the heavy packages an env may lack: import name -> pin name
HEAVY = {
    "torch": "torch",
    "torchvision": "torchvision",
    "matplotlib": "matplotlib",
    "sklearn": "scikit-learn",
    "mnist1d": "mnist1d",
    "mlxtend": "mlxtend",
}
# makes any import of the named packages fail, as it would in a conda env without them
BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {missing!r}:
            raise ImportError(f"{{name}} is not {where}")
sys.meta_path.insert(0, Block())
"""


def rule_scripts() -> list[tuple[str, str]]:
    """(env, script) for every rule of the workflow that runs a script (rules made in loops or with ``use rule``
    included), e.g. ("torch", "train.py")."""
    rules = workflow_rules.parsed_rules().values()
    return [(Path(rule.env).stem, Path(rule.script).name) for rule in rules if rule.script is not None]


def script_imports(script: Path) -> set[str]:
    """The modules a script imports; one that picks its module at run time may use every plotting module."""
    tree = ast.parse(script.read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aedissect"):
            package = REPO / "workflow" / node.module.replace(".", "/")
            named = {alias.name for alias in node.names if (package / f"{alias.name}.py").exists()}
            modules |= {f"{node.module}.{name}" for name in named}
            modules.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
    if "importlib" in script.read_text():
        plotting = (REPO / "workflow" / "aedissect" / "analysis").glob("plotting*.py")
        modules |= {f"aedissect.analysis.{p.stem}" for p in plotting}
    return modules


def import_blocking(missing: list[str], modules: set[str], where: str) -> subprocess.CompletedProcess:
    """Import ``modules`` in a fresh interpreter where the packages ``missing`` cannot be imported."""
    code = BLOCK.format(missing=sorted(missing), where=where) + "".join(f"import {m}\n" for m in sorted(modules))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)


def import_without(env: str, modules: set[str]) -> subprocess.CompletedProcess:
    missing = [name for name, pin in HEAVY.items() if pin not in env_pins(REPO / "envs" / f"{env}.yaml")]
    return import_blocking(missing, modules, f"in envs/{env}.yaml")


def test_every_script_imports_only_what_its_env_has():
    by_env: dict[str, set[str]] = {}
    for env, script in rule_scripts():
        by_env.setdefault(env, set()).add(script)
    assert {"paper_findings.py", "figure.py", "check_training.py"} <= by_env["analysis"]
    assert {"train.py", "truncate.py"} <= by_env["torch"]
    for env, scripts in by_env.items():
        modules = set().union(*(script_imports(REPO / "workflow" / "scripts" / s) for s in scripts))
        proc = import_without(env, modules)
        assert proc.returncode == 0, f"a script of envs/{env}.yaml: {proc.stderr[-1500:]}"
    # and the check can fail: the interventions module needs torch, which the analysis env lacks
    assert import_without("analysis", {"aedissect.nets.interventions"}).returncode != 0


def torch_free_modules() -> set[str]:
    """Every module of the package outside ``aedissect.nets``: the core and the analysis side."""
    root = REPO / "workflow"
    paths = [p for p in (root / "aedissect").rglob("*.py") if "nets" not in p.relative_to(root / "aedissect").parts]
    return {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__") for p in paths} - {
        "aedissect.__main__"
    }


def test_the_package_outside_nets_imports_without_torch():
    """The env line is the package line: only ``aedissect.nets`` may need torch (or torchvision)."""
    modules = torch_free_modules()
    assert {"aedissect.analysis.findings", "aedissect.analysis.truncation_tables", "aedissect.config"} <= modules
    proc = import_blocking(["torch", "torchvision"], modules, "importable here")
    assert proc.returncode == 0, f"a torch-free module needs torch: {proc.stderr[-1500:]}"
    # and the check can fail: every torch-side module needs it
    for module in ("aedissect.nets.models", "aedissect.nets.probes", "aedissect.nets.interventions"):
        assert import_blocking(["torch"], {module}, "importable here").returncode != 0, module


# what the workflow's own process must do without: the package's dependencies that Snakemake does not bring
NOT_SNAKEMAKES = ["torch", "torchvision", "pandas", "numpy", "matplotlib", "sklearn", "scipy", "mnist1d", "mlxtend"]


def rule_file_imports() -> set[str]:
    """The package's modules the Snakefile and the rule files import."""
    modules = set()
    for path in [REPO / "Snakefile", *(REPO / "workflow" / "rules").glob("*.smk")]:
        for module, names in re.findall(r"^\s*from (aedissect[\w.]*) import ([\w, ]+)", path.read_text(), re.M):
            package = REPO / "workflow" / module.replace(".", "/")
            named = {name.split()[0] for name in names.split(",")}
            modules |= {f"{module}.{name}" for name in named if (package / f"{name}.py").exists()} | {module}
    return modules


def test_the_rule_files_import_only_what_snakemake_brings():
    modules = rule_file_imports()
    assert {"aedissect.config", "aedissect.io", "aedissect.plans", "aedissect.analysis.paper_outline"} <= modules
    proc = import_blocking(NOT_SNAKEMAKES, modules, "what Snakemake brings")
    assert proc.returncode == 0, f"Snakemake's own process would need more than Snakemake: {proc.stderr[-1500:]}"


@pytest.fixture(scope="session")
def snakemake_only(tmp_path_factory) -> list[str]:
    """The command of a Snakemake installed alone (the lock's version) in a venv of its own, as with ``--sdm conda``
    where the jobs' envs hold the rest; about a minute to install, once per session."""
    venv = tmp_path_factory.mktemp("snakemake_only")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pin = f"snakemake=={direct_requirements()['snakemake']}"
    subprocess.run([python, "-m", "pip", "install", "--quiet", pin], check=True, capture_output=True, timeout=900)
    found = subprocess.run(
        [python, "-c", f"import importlib.util as u; print([m for m in {NOT_SNAKEMAKES!r} if u.find_spec(m)])"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == "[]", f"Snakemake brought {found.stdout}: the test would prove nothing"
    return [python, "-m", "snakemake"]


@pytest.mark.slow
def test_snakemake_alone_reads_lints_and_checks_the_workflow(snakemake_only, tmp_path, tiny_config):
    import yaml

    # without PYTHONPATH the package is found only as the workflow itself finds it (common.smk)
    alone = {"command": snakemake_only, "env": {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}}
    for configfile in (TINY_CONFIG, REPO / "config.yaml"):  # the tiny and the default study
        planned = planned_jobs(tmp_path / "alone", configfile=configfile, **alone)
        assert planned == planned_jobs(tmp_path / "venv", configfile=configfile)
    snakemake(tmp_path / "alone", "--lint", **alone)  # a lint makes it fail
    # the data check before any job (onstart) needs no torch either
    tiny_config.update(datasets=["mnist"], interventions={})
    tiny_config["data"]["root"] = str(tmp_path / "no-data")
    path = tmp_path / "mnist.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    proc = snakemake(tmp_path / "mnist", "--cores", "1", configfile=path, check=False, **alone)
    out = proc.stdout + proc.stderr
    missing = tmp_path / "no-data" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    assert proc.returncode != 0 and f"data set 'mnist': {missing} not found and 3 more files there" in out
    assert "data.root" in out and not (tmp_path / "mnist" / "results").exists()


def library_imports() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at the top or inside a function."""
    root = REPO / "workflow"
    paths = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (root / "aedissect").rglob("*.py")}  # fmt: skip
    graph = {}
    for module, path in paths.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aedissect"):
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in paths else node.module
                          for a in node.names}  # fmt: skip
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("aedissect")}
        graph[module] = {m for m in found if m in paths and m != module and paths[m].name != "__init__.py"}
    return graph


def test_the_library_has_no_import_cycle():
    graph = library_imports()
    assert "aedissect.nets.training" in graph["aedissect.nets.ensemble"]  # the check sees imports
    state: dict[str, str] = {}

    def visit(module, path):
        state[module] = "open"
        for dep in sorted(graph[module]):
            assert state.get(dep) != "open", "import cycle: " + " -> ".join([*path, dep])
            if dep not in state:
                visit(dep, [*path, dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    # the one direction of the env line: the torch-free side reaches the torch side only in the CLI's torch commands
    crossing = {m for m, deps in graph.items() if not m.startswith("aedissect.nets") for d in deps if "nets." in d}
    assert crossing == {"aedissect.cli"}
