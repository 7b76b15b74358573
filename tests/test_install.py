"""A non-editable install: the wheel carries every sub-package and the config schema and declares every
third-party package the library imports; installed into a venv of its own, outside the repository, its command
profiles the question's class."""

import ast
import email
import re
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from conftest import REPO
from test_chains import QUESTION_SOURCE

# import name -> distribution name, where they differ
DISTRIBUTIONS = {"sklearn": "scikit-learn", "yaml": "pyyaml"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
    )
    (path,) = out.glob("aedissect-*.whl")
    return path


def third_party_imports() -> set[str]:
    names = set()
    for source in (REPO / "workflow" / "aedissect").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    # snakemake: only the workflow's helpers that run inside Snakemake import it
    return names - set(sys.stdlib_module_names) - {"aedissect", "snakemake"}


@pytest.mark.slow
def test_the_wheel_ships_every_sub_package_the_schema_and_its_dependencies(wheel):
    with zipfile.ZipFile(wheel) as archive:
        files = set(archive.namelist())
        (meta,) = [name for name in files if name.endswith("METADATA")]
        metadata = email.message_from_bytes(archive.read(meta))
    for package in ("aedissect", "aedissect/nets", "aedissect/analysis"):
        assert f"{package}/__init__.py" in files
    assert "aedissect/schemas/config.schema.yaml" in files
    declared = {re.split(r"[<>=!; \[]", req)[0].lower() for req in metadata.get_all("Requires-Dist")}
    needed = {DISTRIBUTIONS.get(name, name).lower() for name in third_party_imports()}
    assert needed <= declared, f"imported but not declared: {sorted(needed - declared)}"


@pytest.mark.slow
def test_the_installed_command_profiles_the_question_s_class_outside_the_repository(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # the dependencies come from this venv's site-packages (installing torch again costs minutes); the library only
    # from the wheel: the editable install's path hook is not carried over
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True)
    (site / "deps.pth").write_text("\n".join(p for p in [sysconfig.get_paths()["purelib"]] if p) + "\n")
    source = tmp_path / "question.py"
    source.write_text(
        "import torch\n"
        + QUESTION_SOURCE
        + "\n\nif __name__ == '__main__':\n    torch.save(AE(64, 8).state_dict(), 'state.pt')\n"
    )
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    subprocess.run([python, str(source)], cwd=tmp_path, env=env, check=True)
    where = subprocess.run(
        [python, "-c", "import aedissect; print(aedissect.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert str(site) in where.stdout, where.stdout + where.stderr
    assert subprocess.run([str(venv / "bin" / "aedissect"), "--help"], env=env, cwd=tmp_path).returncode == 0
    options = ["--option=probe_size=100", "--option=max_points=100", "--option=nonlinear_epochs=1"]
    done = subprocess.run(
        [
            str(venv / "bin" / "aedissect"),
            "profile",
            "state.pt",
            "--model",
            "question.py:AE",
            "--kwarg",
            "x_dim=64",
            "--kwarg",
            "z_dim=8",
            "--data",
            "digits",
            "--out",
            "profile.csv",
            *options,
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "profile.csv").read_text().count("\n") > 50
