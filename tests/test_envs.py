"""The pinned conda envs and the venv's requirements file pin the same versions; every rule's script imports only
what its env holds."""

import ast
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO, load_yaml


def requirement_pins() -> dict:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def env_pins(path) -> dict:
    pins = {}
    for dep in load_yaml(path)["dependencies"]:
        entries = dep["pip"] if isinstance(dep, dict) else [dep]
        for entry in entries:
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*==?\s*([0-9][^\s]*)", entry)
            if match:
                pins[match.group(1).lower()] = match.group(2)
    return pins


def test_every_requirement_is_pinned_exactly():
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        assert not line or re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", line), line


def test_envs_pin_the_same_versions_as_requirements():
    reqs = requirement_pins()
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        pins = env_pins(env)
        assert pins.pop("python").startswith("3.11"), env
        for name, version in pins.items():
            assert name in reqs, f"{env.name} pins {name}, requirements.txt does not"
            assert reqs[name] == version, f"{env.name}: {name}=={version} but requirements.txt has {reqs[name]}"


def test_every_rule_names_an_existing_env():
    for rules in (REPO / "workflow" / "rules").glob("*.smk"):
        for env in re.findall(r'"\.\./\.\./(envs/[^"]+)"', rules.read_text()):
            assert (REPO / env).exists(), f"{rules.name} uses missing {env}"


# the heavy packages an env may lack: import name -> pin name
HEAVY = {
    "torch": "torch",
    "torchvision": "torchvision",
    "matplotlib": "matplotlib",
    "sklearn": "scikit-learn",
    "mnist1d": "mnist1d",
}
# makes any import of the named packages fail, as it would in a conda env without them
BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {missing!r}:
            raise ImportError(f"{{name}} is not in envs/{env}.yaml")
sys.meta_path.insert(0, Block())
"""


def rule_scripts() -> list[tuple[str, str]]:
    """(env, script) for every rule of the workflow that runs a script (rules made in loops included)."""
    found = []
    for rules in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=\s*rule\b)", rules.read_text()):
            env = re.search(r'"\.\./\.\./envs/(\w+)\.yaml"', block)
            script = re.search(r'script:\s*\n\s*"\.\./scripts/([\w.]+)"', block)
            if env and script:
                found.append((env.group(1), script.group(1)))
    return found


def script_imports(script: Path) -> set[str]:
    """The modules a script imports; one that picks its module at run time may use every plotting module."""
    tree = ast.parse(script.read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "aedissect":
            modules |= {f"aedissect.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
    if "importlib" in script.read_text():
        modules |= {f"aedissect.{p.stem}" for p in (REPO / "workflow" / "aedissect").glob("plotting*.py")}
    return modules


def import_without(env: str, modules: set[str]) -> subprocess.CompletedProcess:
    missing = sorted(name for name, pin in HEAVY.items() if pin not in env_pins(REPO / "envs" / f"{env}.yaml"))
    code = BLOCK.format(missing=missing, env=env) + "".join(f"import {m}\n" for m in sorted(modules))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)


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
    assert import_without("analysis", {"aedissect.interventions"}).returncode != 0
