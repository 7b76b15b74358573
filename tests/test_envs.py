"""The pinned conda envs and the venv's requirements file pin the same versions."""

import re

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
