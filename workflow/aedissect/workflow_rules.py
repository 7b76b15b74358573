"""The workflow's rules as Snakemake parsed them: each rule's conda env, script and whether it is a local rule.

Tools outside the workflow (the SLURM test, ``make bench``, the env tests) tell torch jobs from analysis jobs by
the env a rule runs in. They ask Snakemake, not the rule files' text: a rule made with ``use rule X as Y with:``
or in a loop has no ``conda:`` line of its own, yet runs in X's env.

Snakemake's API hands out the parsed workflow only as ``WorkflowApi._workflow`` (which its own ``DAGApi`` uses);
the version is pinned by the lock, and ``tests/test_envs.py`` checks what this module returns.
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[2]
TORCH_ENV = "envs/torch.yaml"
ANALYSIS_ENV = "envs/analysis.yaml"


class RuleInfo(NamedTuple):
    env: str | None  # the conda env file relative to the repository (envs/torch.yaml), None for a target rule
    script: str | None  # the script relative to the repository (workflow/scripts/train.py)
    local: bool  # named under localrules: it runs on the submitting host, never in a cluster job


def _from_repo(basedir: str, path: str | None) -> str | None:
    return None if path is None else str(Path(basedir, path).resolve().relative_to(REPO))


@lru_cache
def parsed_rules(configfile: str | Path = REPO / "config.yaml") -> dict[str, RuleInfo]:
    """Every rule of the workflow, in definition order, parsed for the study ``configfile`` (in a scratch
    working directory, which is left as it was found)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, Quietness, ResourceSettings

    with tempfile.TemporaryDirectory() as workdir, SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow = api.workflow(
            ResourceSettings(),
            ConfigSettings(configfiles=[Path(configfile).resolve()]),
            snakefile=REPO / "Snakefile",
            workdir=Path(workdir),
        )._workflow
        return {
            rule.name: RuleInfo(
                _from_repo(rule.basedir, rule.conda_env),
                _from_repo(rule.basedir, rule.script),
                rule.name in workflow._localrules,
            )
            for rule in workflow.rules
        }


def torch_rules(configfile: str | Path = REPO / "config.yaml") -> set[str]:
    """The rules whose jobs run in the torch env: the heavy ones (a SLURM job each, a slow start-up)."""
    return {name for name, rule in parsed_rules(configfile).items() if rule.env == TORCH_ENV}


def local_rules(configfile: str | Path = REPO / "config.yaml") -> set[str]:
    return {name for name, rule in parsed_rules(configfile).items() if rule.local}
