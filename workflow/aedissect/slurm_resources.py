"""Suggested SLURM runtimes for a study: the training work of each rule's largest job times a measured cost.

    python -m aedissect.slurm_resources studies/mnist.yaml --seconds-per-epoch 4.5

The unit is one model-epoch: one epoch of one model over the data set's training split. Measure it from a job's
log (the ``s/epoch`` of its per-epoch lines; a batched ensemble's epoch counts as one per member) or its
benchmark file (seconds / (seeds x epochs)). Per job the work is

- train: every seed of a grid cell, ``training.epochs`` each;
- freeze: every distinct freeze variant of every seed of a freeze cell, ``training.epochs`` each;
- criticality: every layer of every model of a group retrained alone, ``retrain_epochs`` each;
- stitching: two fitted stitches (trained and init A) per configured pair of a group and cut it is stitched at
  (``plans.stitch_cuts``: every hidden cut for a pair of one architecture), ``stitching.epochs`` each.

A batched ensemble trains faster than its members one by one, so the estimate errs long. The printed limits
scale with ``attempt``: a job SLURM killed at its limit is resubmitted (``retries``) with that much more time.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict

from aedissect import config, datasets, measured, plans
from aedissect.architectures import dense_architectures

MARGIN = 1.5  # over the estimate: a busy node, the data loading and evaluation between epochs
MINIMUM = 10  # minutes; below this the per-job start-up dominates


def model_epochs(study: dict) -> dict[str, int]:
    """Per training rule: the model-epochs of its largest job."""
    return {rule: max(jobs.values(), default=0) for rule, jobs in job_epochs(study).items()}


def job_epochs(study: dict) -> dict[str, dict[str, int]]:
    """Per training rule, per job (its grid cell or group id, ``config.cell_id`` / ``run_group``): the
    model-epochs it trains."""
    runs = config.grid(study)
    options = study["interventions"]
    work: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for run in runs:
        work["train"][config.run_cell(run)] += run["training"]["epochs"]
    covered = plans.intervention_runs(study, runs)
    for run in covered:
        work["criticality"][config.run_group(run)] += plans.n_layers(run) * options["criticality"]["retrain_epochs"]
    specs = plans.freeze_specs_by_run(study, runs)
    for run in covered:
        variants = {plans.variant_key(run, s) for s in specs[run["run_id"]]}
        work["freeze"][config.run_cell(run)] += len(variants) * run["training"]["epochs"]
    stitching = options["stitching"]
    for group in plans.groups(covered):
        members = plans.group_runs(covered, group)
        pairs = plans.stitch_pairs(members, stitching["pair_types"])
        fitted = sum(
            2 * len(plans.stitch_cuts(members[i], members[j], kind))
            for i, j, kind in pairs
            if kind != "self" or stitching["fit_self"]
        )
        work["stitching"][group] = fitted * stitching["epochs"]
    return {rule: dict(jobs) for rule, jobs in work.items()}


def training_seconds(study: dict, cost: dict[str, tuple[float, float]]) -> float:
    """The study's training work, one job after another: per training job, its model-epochs x its data set's
    training samples x the seconds per sample of its runs, ``a + b x`` their weight multiply-adds (averaged over a
    group's architectures) for their model kind's ``(a, b)`` in ``cost`` (``measured.cost_model``)."""
    runs_of: dict[str, list] = defaultdict(list)  # a job id (a cell or a group) -> its runs
    for run in config.grid(study):
        runs_of[config.run_cell(run)].append(run)
        runs_of[config.run_group(run)].append(run)
    seconds = 0.0
    for jobs in job_epochs(study).values():
        for job, epochs in jobs.items():
            runs = runs_of[job]
            dataset, (a, b) = runs[0]["dataset"], cost[runs[0]["kind"]]
            in_dim = datasets.input_size(dataset, study["data"])
            per_sample = a + b * sum(measured.run_macs(run, in_dim) for run in runs) / len(runs)
            seconds += epochs * datasets.train_samples(dataset, study["data"]) * per_sample
    return seconds


def largest_net_macs(study: dict) -> int:
    """The weight multiply-adds of the study's largest architecture at its middle bottleneck: the net whose rate
    the bench measures for studies/mnist.yaml (``bench.paper_scale_hours``)."""
    arch = max(dense_architectures(study).values(), key=lambda a: len(a["encoder"]) + len(a["decoder"]))
    z = sorted(study["bottlenecks"])[len(study["bottlenecks"]) // 2]
    in_dim = datasets.input_size(study["datasets"][0], study["data"])
    return measured.weight_macs((in_dim, *arch["encoder"], z, *arch["decoder"], in_dim))


def runtime_minutes(epochs: int, seconds_per_epoch: float) -> int:
    return max(MINIMUM, math.ceil(epochs * seconds_per_epoch * MARGIN / 60))


def suggestion(study_path: str, seconds_per_epoch: float) -> str:
    """The ``set-resources`` block for profiles/slurm/config.yaml, as YAML text."""
    work = model_epochs(config.read_study(study_path))
    lines = [
        f"# {study_path} at {seconds_per_epoch:g} s per model-epoch, x{MARGIN} margin; a resubmitted job gets",
        "# the limit once more per attempt",
        "set-resources:",
    ]
    for rule, epochs in work.items():
        minutes = runtime_minutes(epochs, seconds_per_epoch)
        lines += [f"  {rule}:", f'    runtime: "{minutes} * attempt"   # largest job: {epochs} model-epochs']
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aedissect.slurm_resources", description=__doc__.split("\n")[0])
    parser.add_argument("study", help="the study config (config.yaml, studies/*.yaml)")
    parser.add_argument("--seconds-per-epoch", type=float, required=True, help="measured seconds per model-epoch")
    args = parser.parse_args(argv)
    try:
        print(suggestion(args.study, args.seconds_per_epoch))
    except config.ConfigError as err:
        print(f"{parser.prog}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
