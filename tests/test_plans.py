"""The run selection the workflow asks ``aedissect.plans`` for when it parses the rules: cells, groups, the runs a
selection picks, the truncate jobs' options. Plain functions of the config, checked here against grids written
out by hand."""

import copy

import pytest

from aedissect import config, plans
from conftest import TINY_CONFIG, load_yaml


@pytest.fixture
def study() -> dict:
    """The tiny study, validated: 2 data sets x 2 kinds x 3 architectures x z3 x relu x 2 seeds."""
    return config.validate(copy.deepcopy(load_yaml(TINY_CONFIG)))


def ids(runs) -> list[str]:
    return [run["run_id"] for run in runs]


def test_cells_and_groups_are_unique_and_in_grid_order(study):
    runs = config.grid(study)
    assert len(runs) == 24
    cells = plans.cells(runs)
    assert cells[:3] == ["digits/ae/sym/z3/relu", "digits/ae/enc-heavy/z3/relu", "digits/ae/dec-heavy/z3/relu"]
    assert len(cells) == 12 and len(set(cells)) == 12
    assert plans.groups(runs) == [
        "digits/ae/z3/relu",
        "digits/vae/z3/relu",
        "factors/ae/z3/relu",
        "factors/vae/z3/relu",
    ]
    assert plans.datasets(runs) == ["digits", "factors"]
    group = plans.group_runs(runs, "factors/vae/z3/relu")
    assert ids(group) == [f"factors/vae/{arch}/z3/relu/s{seed}" for arch in ("sym", "enc-heavy", "dec-heavy")
                          for seed in (0, 1)]  # fmt: skip
    assert ids(plans.dataset_runs(runs, "digits")) == ids(runs[:12])


def test_a_selection_keeps_the_runs_whose_every_selected_field_matches(study):
    runs = config.grid(study)
    assert plans.selected(runs, {}) == runs
    assert plans.selected(runs, dict.fromkeys(plans.SELECTION_KEYS)) == runs  # every key null: all
    picked = plans.selected(
        runs, {"datasets": ["factors"], "model_kinds": ["ae"], "architectures": ["sym", "dec-heavy"]}
    )
    assert ids(picked) == [f"factors/ae/{arch}/z3/relu/s{seed}" for arch in ("sym", "dec-heavy") for seed in (0, 1)]
    assert plans.selected(runs, {"bottlenecks": [3], "activations": ["relu"]}) == runs
    assert plans.selected(runs, {"bottlenecks": [4]}) == []


def test_the_freeze_sweep_and_the_truncation_read_their_own_selection(study):
    runs = config.grid(study)
    study["interventions"]["cells"] = {"model_kinds": ["vae"], "architectures": ["sym"]}
    study["truncation"]["select"] = {"datasets": ["digits"], "architectures": ["enc-heavy"]}
    assert ids(plans.intervention_runs(study, runs)) == [f"{d}/vae/sym/z3/relu/s{s}" for d in ("digits", "factors")
                                                   for s in (0, 1)]  # fmt: skip
    truncated = plans.truncation_runs(study, runs)
    assert ids(truncated) == [f"digits/{k}/enc-heavy/z3/relu/s{s}" for k in ("ae", "vae") for s in (0, 1)]
    assert plans.cells(truncated) == ["digits/ae/enc-heavy/z3/relu", "digits/vae/enc-heavy/z3/relu"]


def test_the_truncate_jobs_options_leave_out_the_selection_and_the_threads(study):
    options = plans.truncation_options(study)
    assert "select" not in options and "threads" not in options
    assert options == {k: v for k, v in study["truncation"].items() if k not in ("select", "threads")}
    study["truncation"]["select"] = {"datasets": ["digits"]}
    study["truncation"]["threads"] = 7
    assert plans.truncation_options(study) == options  # selecting more, or more threads, reruns no truncate job


def test_a_bad_freeze_k_is_refused_for_every_run(study):
    specs = plans.freeze_specs_by_run(study, config.grid(study))
    assert set(specs) == {run["run_id"] for run in config.grid(study)}
    study["interventions"]["freeze"]["k"] = {"sym": [9]}
    with pytest.raises(config.ConfigError, match="interventions.freeze.k.sym"):
        plans.freeze_specs_by_run(study, config.grid(study))
