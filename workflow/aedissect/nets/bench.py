"""`make bench` (``python -m aedissect.nets.bench``): how fast the pipeline trains, on this machine, in one run.

Prints a table and writes results/bench.json (keys listed in BENCH_KEYS) so that runs can be compared
over time. Parts, each timed here and now (nothing is taken from a file):

- gemm_peak_gflops: the best fp32 matrix multiply rate (2048^3) with the benchmark's threads;
- an MNIST-shaped MLP AE and VAE (784-512-256-32, symmetric, Adam) trained by aedissect.nets.training.train
  from in-memory tensors: samples/s and model-FLOP utilisation (6 x weight MACs per sample / s / peak)
  at batch 128 and 512;
- the step ceiling of each of those models (``step_ceiling``): its forward and backward matrix products and its
  fused Adam step, each timed alone at the step's shapes, as samples/s, and the pipeline's rate as a fraction of
  it (``<kind>_ceiling_fraction_b<batch>``): the yardstick of the model's own products rather than the 2048^3
  GEMM's, which this model's smaller products cannot reach;
- the same AE trained by a plain DataLoader(TensorDataset) loop: the baseline, and our ratio to it;
- 8 seeds of a digits-sized model: one batched ensemble (aedissect.nets.ensemble) against one after another,
  with --ensemble-threads (default 1, a train job's training.threads);
- startup_s: a fresh Python process running what a train job runs (imports, setup_torch, loading the
  prepared data, building the model) up to the end of its first batch; light_startup_s: a fresh process
  importing what a job of the torch-free analysis env imports (pandas, matplotlib, the table modules);
- paper_scale_hours: the paper-scale MNIST study's training work (studies/mnist.yaml: every rule's
  model-epochs, as slurm_resources counts them) at the measured per-member rate of an ensemble of its
  seeds of its largest architecture, per model kind, on the benchmark's device (CPU or CUDA);
- dag_build_s / dag_jobs: `snakemake -n` for the largest study (studies/*.yaml, else config.yaml);
- default_study_s: the default study (config.yaml) run with --cores 2 in a scratch directory (and
  default_study_3_seeds_s: the same with its first 3 seeds), and
  startup_share = (torch jobs x startup_s + analysis jobs x light_startup_s) / (2 cores x wall time), the
  share of the run spent starting jobs rather than working in them; a rule's env, as Snakemake parsed the
  workflow (``aedissect.workflow_rules``), says which kind its jobs are (skip this part with --skip-study).

Run it on an otherwise idle machine: the numbers are rates, and other processes take the cores.
These are benchmark numbers, never assertions; docs/benchmark.md states the targets.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]  # workflow/aedissect/nets/bench.py

BENCH_KEYS = [
    "gemm_peak_gflops",
    "mfu_b128",
    "mfu_b512",
    "ae_ceiling_fraction_b128",
    "ae_ceiling_fraction_b512",
    "vae_ceiling_fraction_b128",
    "vae_ceiling_fraction_b512",
    "baseline_ratio_b128",
    "ensemble_speedup",
    "freeze_sweep_speedup",
    "startup_s",
    "light_startup_s",
    "dag_build_s",
    "dag_jobs",
    "default_study_s",
    "default_study_3_seeds_s",
    "paper_scale_hours",
    "startup_share",
]
MNIST_ARCH = {"family": "symmetric", "encoder": [512, 256], "decoder": [256, 512]}


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def gemm_peak(device, n: int = 2048, reps: int = 10) -> float:
    """Best fp32 GEMM rate in GFLOP/s."""
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    c = torch.empty(n, n, device=device)
    for _ in range(2):
        torch.mm(a, b, out=c)
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        torch.mm(a, b, out=c)
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def make_run(kind: str, arch: dict, z: int, batch_size: int, epochs: int, seed: int = 0, lr: float = 1e-3) -> dict:
    from aedissect.config import resolve_run

    config = {
        "architectures": {"arch": arch},
        "training": {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": 0.0,
            "device": "auto",
            "threads": 1,
            "keep_epochs": [],
            "checkpoint_every": 1000,
            "ensemble": False,
        },
        "vae": {"beta": 1.0, "likelihood": "bernoulli", "sigma": 0.1},
    }
    return resolve_run(config, "bench", kind, "arch", z, "relu", seed)


def model_flops_per_sample(run: dict, in_dim: int) -> float:
    """Training FLOPs per sample: 6 x the multiply-adds of the weight matrices (forward 2, backward 4)."""
    from aedissect.nets.models import build_model

    model = build_model(run, in_dim)
    return 6.0 * sum(layer[0].in_features * layer[0].out_features for layer in model.layers)


def mnist_like(n: int, device, seed: int = 0) -> dict:
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 784, generator=gen)
    return {"x_train": x.to(device), "x_test": x[:256].clone().to(device)}


def pipeline_rate(kind: str, batch_size: int, data: dict, device, epochs: int) -> float:
    """Samples/s of aedissect.nets.training.train (its per-epoch test evaluation on 256 samples included)."""
    from aedissect.nets.training import train

    run = make_run(kind, MNIST_ARCH, 32, batch_size, epochs)
    warm = make_run(kind, MNIST_ARCH, 32, batch_size, 1)
    train(warm, {"x_train": data["x_train"][: batch_size * 4], "x_test": data["x_test"]}, device)
    sync(device)
    t = time.perf_counter()
    train(run, data, device)
    sync(device)
    return data["x_train"].shape[0] * epochs / (time.perf_counter() - t)


def best_seconds(op, reps: int = 7, inner: int = 20) -> float:
    """The best over ``reps`` of the mean time of ``inner`` calls of ``op`` (after two warm-up calls)."""
    op()
    op()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(inner):
            op()
        best = min(best, (time.perf_counter() - t) / inner)
    return best


def step_ceiling(kind: str, batch_size: int, device) -> float:
    """Samples/s of the model's own training step if it did nothing but its matrix products and its optimiser step:
    per layer the forward product (``addmm``, bias included), the backward products for the weight's gradient and
    (but for the first layer, whose input needs none) the input's, each timed alone on tensors of the step's shapes,
    plus the fused Adam step over all parameters. Everything else a step does (activations, the loss, the batch
    gather, the VAE's noise) counts against the pipeline: ``<kind>_ceiling_fraction_b<batch>`` is its rate over
    this ceiling."""
    import torch

    from aedissect.nets.models import build_model
    from aedissect.nets.optim import Adam

    model = build_model(make_run(kind, MNIST_ARCH, 32, batch_size, 1), 784).to(device)
    seconds = 0.0
    for i, layer in enumerate(model.layers):
        weight, bias = layer[0].weight.detach(), layer[0].bias.detach()
        out_dim, in_dim = weight.shape
        h = torch.rand(batch_size, in_dim, device=device)
        g = torch.rand(batch_size, out_dim, device=device)
        y, dw, dh = (torch.empty(s, device=device) for s in ((batch_size, out_dim), weight.shape, h.shape))

        def forward(h=h, weight=weight, bias=bias, y=y):
            torch.addmm(bias, h, weight.t(), out=y)
            sync(device)

        def weight_grad(g=g, h=h, dw=dw):
            torch.mm(g.t(), h, out=dw)
            sync(device)

        def input_grad(g=g, weight=weight, dh=dh):
            torch.mm(g, weight, out=dh)
            sync(device)

        seconds += best_seconds(forward) + best_seconds(weight_grad) + (best_seconds(input_grad) if i else 0.0)
    params = [p for p in model.parameters()]
    for p in params:
        p.grad = torch.rand_like(p)
    adam = Adam(params, lr=1e-3)

    def adam_step():
        adam.step()
        sync(device)

    seconds += best_seconds(adam_step)
    return batch_size / seconds


def baseline_rate(batch_size: int, data: dict, device, epochs: int) -> float:
    """Samples/s of the textbook loop: DataLoader(TensorDataset(x), shuffle=True), MSE, Adam."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from aedissect.nets.models import build_model

    run = make_run("ae", MNIST_ARCH, 32, batch_size, epochs)
    x = data["x_train"].cpu()
    model = build_model(run, 784).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x), batch_size=batch_size, shuffle=True)

    def one_epoch():
        for (xb,) in loader:
            xb = xb.to(device)
            loss = torch.nn.functional.mse_loss(model(xb), xb)
            opt.zero_grad()
            loss.backward()
            opt.step()

    sync(device)
    t = time.perf_counter()
    for _ in range(epochs):
        one_epoch()
    sync(device)
    return x.shape[0] * epochs / (time.perf_counter() - t)


def ensemble_speedup(device, n_seeds: int = 8, epochs: int = 10) -> tuple[float, float, float]:
    """Seconds for n_seeds digits-sized AEs one after another, as one ensemble, and the ratio."""
    import torch

    from aedissect.nets import ensemble, training
    from aedissect.nets.data import load_digits_split

    split = load_digits_split({"test_fraction": 0.2, "split_seed": 0})
    data = {k: torch.as_tensor(split[k]).to(device) for k in ("x_train", "x_test")}
    arch = {"family": "symmetric", "encoder": [48, 24], "decoder": [24, 48]}
    runs = [make_run("ae", arch, 8, 64, epochs, seed=s, lr=2e-3) for s in range(n_seeds)]
    training.train(make_run("ae", arch, 8, 64, 1), data, device)  # warm-up
    sync(device)
    t = time.perf_counter()
    for run in runs:
        training.train(run, data, device)
    sync(device)
    sequential = time.perf_counter() - t
    t = time.perf_counter()
    ensemble.train_ensemble(runs, data, device)
    sync(device)
    together = time.perf_counter() - t
    return sequential, together, sequential / together


def freeze_sweep_speedup(device, seeds: int = 3) -> tuple[float, float, float, int]:
    """Seconds for the freeze sweep of one default-study cell (digits, AE, symmetric, z = 8: every spec of every
    seed, as the freeze job plans and starts it: ``interventions.cell_variants`` and ``cell_models``) one after
    another and as ``train_members`` stacks it, the ratio and the number of trainings."""
    import torch

    from aedissect import config, plans
    from aedissect.nets import ensemble, interventions
    from aedissect.nets.data import load_digits_split

    cfg = config.load_yaml(REPO / "config.yaml")
    cfg = config.validate(cfg, REPO / "workflow" / "schemas" / "config.schema.yaml")
    cfg["seeds"] = list(range(seeds))
    cell = ("digits", "ae", "symmetric", 8)
    runs = [r for r in config.grid(cfg) if (r["dataset"], r["kind"], r["arch"], r["bottleneck"]) == cell]
    split = load_digits_split(cfg["data"])
    data = {k: torch.as_tensor(split[k]).to(device) for k in ("x_train", "x_test")}
    variants, names, _, _ = interventions.cell_variants(runs, plans.freeze_specs_by_run(cfg, runs))
    timings = []
    for batched in (False, True):
        sync(device)
        t = time.perf_counter()
        models = interventions.cell_models(variants, data["x_train"])  # trained in place one after another
        ensemble.train_members(variants, data, device, names, models, ensemble=batched)
        sync(device)
        timings.append(time.perf_counter() - t)
    return timings[0], timings[1], timings[0] / timings[1], len(variants)


# The paper-scale study and what its data set holds (torchvision's MNIST: 60,000 training images of 28 x 28):
# fixed here so that the estimate needs neither the files nor a download.
PAPER_STUDY = REPO / "studies" / "mnist.yaml"
PAPER_TRAIN_SAMPLES = 60_000
PAPER_IN_DIM = 784


def member_sample_seconds(kind: str, arch: dict, z: int, batch_size: int, members: int, device, samples: int) -> float:
    """Seconds per training sample per member of a batched ensemble of ``members`` seeds (one timed epoch over
    ``samples`` MNIST-shaped rows after a one-epoch warm-up), per-epoch test evaluation included."""
    from aedissect.nets import ensemble

    data = mnist_like(samples, device, seed=1)
    warm = [make_run(kind, arch, z, batch_size, 1, seed=s) for s in range(members)]
    ensemble.train_ensemble(warm, {"x_train": data["x_train"][: batch_size * 4], "x_test": data["x_test"]}, device)
    runs = [make_run(kind, arch, z, batch_size, 1, seed=s) for s in range(members)]
    sync(device)
    t = time.perf_counter()
    ensemble.train_ensemble(runs, data, device)
    sync(device)
    return (time.perf_counter() - t) / (members * samples)


def paper_scale_hours(device, samples: int) -> tuple[float, dict]:
    """Estimated hours of training work of the paper-scale MNIST study (``PAPER_STUDY``) on this device, one
    job at a time: every rule's model-epochs (``slurm_resources.job_epochs``) x the training-set size x the
    measured seconds per sample and member of its largest architecture's ensemble, per model kind. It errs
    long: smaller architectures, stitches (only an affine map trains) and retrained single layers cost less."""
    from aedissect import config
    from aedissect.architectures import dense_architectures
    from aedissect.slurm_resources import job_epochs

    study = config.validate(config.load_yaml(PAPER_STUDY), REPO / "workflow" / "schemas" / "config.schema.yaml")
    arch = max(dense_architectures(study).values(), key=lambda a: len(a["encoder"]) + len(a["decoder"]))
    z = sorted(study["bottlenecks"])[len(study["bottlenecks"]) // 2]
    batch = study["training"]["batch_size"]
    rate = {
        kind: member_sample_seconds(kind, arch, z, batch, len(study["seeds"]), device, samples)
        for kind in study["model_kinds"]
    }
    seconds = 0.0
    for jobs in job_epochs(study).values():
        for job, epochs in jobs.items():
            kind = job.split("/")[1]  # cell and group ids both start dataset/kind/
            seconds += epochs * PAPER_TRAIN_SAMPLES * rate[kind]
    return seconds / 3600, rate


PROBE = """
import sys, time
t0 = float(sys.argv[1])
import torch
from aedissect.nets import training
from aedissect.nets.data import load
from aedissect.nets.models import build_model
dev = training.setup_torch(1, sys.argv[3])
data = load(sys.argv[2])
run = {run!r}
model = build_model(run, data["x_train"].shape[1]).to(dev)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
g = torch.Generator(device=dev).manual_seed(0)
xb = data["x_train"][:64].to(dev)
loss = training.loss_terms(model, xb, run, g)["loss"]
loss.backward()
opt.step()
if dev.type == "cuda":
    torch.cuda.synchronize()
print(time.time() - t0)
"""


LIGHT_PROBE = """
import sys, time
t0 = float(sys.argv[1])
import matplotlib.pyplot, pandas
from aedissect.analysis import aggregate, findings, plotting, style
from aedissect import io
print(time.time() - t0)
"""


def median_process_seconds(code: str, args: list[str], reps: int = 3) -> float:
    """Median over reps of the seconds a fresh process running ``code`` reports (it prints them last)."""
    times = []
    for _ in range(reps):
        cmd = [sys.executable, "-c", code, repr(time.time()), *args]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return sorted(times)[len(times) // 2]


def light_startup_cost() -> float:
    """Seconds from process start to the end of the imports of an analysis-env job (tables, figures, paper)."""
    return median_process_seconds(LIGHT_PROBE, [])


def startup_cost(device: str, reps: int = 3) -> float:
    """Seconds from process start to the end of the first batch, as in a train job (median of reps)."""
    import torch

    from aedissect.nets.data import load_digits_split

    split = load_digits_split({"test_fraction": 0.2, "split_seed": 0})
    run = make_run("ae", {"family": "symmetric", "encoder": [48, 24], "decoder": [24, 48]}, 8, 64, 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "digits.pt"
        torch.save({k: torch.as_tensor(split[k]) for k in ("x_train", "x_test")}, path)
        return median_process_seconds(PROBE.format(run=run), [str(path), device], reps)


def largest_study() -> Path:
    """The study config with the most runs: studies/*.yaml, else config.yaml."""
    from aedissect import config

    def n_runs(path):
        cfg = config.load_yaml(path)
        try:
            n = len(cfg["datasets"]) * len(cfg["model_kinds"]) * len(cfg["architectures"])
            return n * len(cfg["bottlenecks"]) * len(cfg["activations"]) * len(cfg["seeds"])
        except (KeyError, TypeError):
            return 0

    candidates = sorted((REPO / "studies").glob("*.yaml")) + [REPO / "config.yaml"]
    return max(candidates, key=n_runs)


def snakemake_cmd(workdir: str, configfile: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        workdir,
        "--configfile",
        str(configfile),
        *args,
    ]


def dag_build() -> tuple[float, int, str]:
    study = largest_study()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        out = subprocess.run(snakemake_cmd(tmp, study, "-n"), capture_output=True, text=True)
        seconds = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"snakemake -n failed for {study}:\n{out.stderr[-3000:]}")
    match = re.search(r"^total\s+(\d+)", out.stdout + out.stderr, flags=re.M)
    return seconds, int(match.group(1)) if match else -1, study.name


def default_study(
    cores: int, startup_s: float, light_startup_s: float, seeds: int | None = None
) -> tuple[float, int, int, float]:
    """Wall seconds of the default study with `cores` (with ``seeds``: its first that many seeds only), its job
    counts (all, torch env), the start-up share."""
    from aedissect import config, workflow_rules

    overrides = []
    if seeds is not None:
        study_seeds = config.load_yaml(REPO / "config.yaml")["seeds"]
        overrides = ["--config", f"seeds={study_seeds[:seeds]}"]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        out = subprocess.run(
            snakemake_cmd(tmp, REPO / "config.yaml", "--cores", str(cores), *overrides), capture_output=True, text=True
        )
        wall = time.perf_counter() - t
        if out.returncode != 0:
            raise RuntimeError(f"the default study failed:\n{out.stderr[-3000:]}")
    # the target rule `all` is a job with no process
    rules = [
        r for r in re.findall(r"^Finished jobid: \d+ \(Rule: (\w+)\)", out.stderr + out.stdout, re.M) if r != "all"
    ]
    heavy = workflow_rules.torch_rules()
    n_torch = sum(rule in heavy for rule in rules)
    starting = n_torch * startup_s + (len(rules) - n_torch) * light_startup_s
    return wall, len(rules), n_torch, starting / (cores * wall)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-study", action="store_true", help="skip the default study's wall time")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--cores", type=int, default=2, help="--cores for the default study")
    parser.add_argument(
        "--ensemble-threads",
        type=int,
        default=1,
        help="torch threads for the 8-seed part (default 1: a train job's training.threads)",
    )
    parser.add_argument("--samples", type=int, default=16384, help="training samples for the MNIST-shaped runs")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--paper-samples", type=int, default=8192, help="MNIST-shaped rows per timed epoch of the paper-scale estimate"
    )
    parser.add_argument("--out", default=str(REPO / "results" / "bench.json"))
    args = parser.parse_args(argv)

    from aedissect import io
    from aedissect.nets import training

    device = training.setup_torch(args.threads, args.device)
    res: dict = {"device": str(device), "threads": args.threads}
    lines = []

    def report(name, value, fmt="{:.3g}", note=""):
        res[name] = value
        text = "skipped" if value is None else fmt.format(value)
        lines.append(f"{name:<28} {text:>12}  {note}")
        print(lines[-1], flush=True)

    print(f"aedissect benchmark on {device} with {args.threads} threads ({os.cpu_count()} cores)", flush=True)
    peak = gemm_peak(device)
    report("gemm_peak_gflops", peak, "{:.1f}", "fp32 2048^3 matrix multiply, best of 10")
    data = mnist_like(args.samples, device)
    for kind in ("ae", "vae"):
        flops = model_flops_per_sample(make_run(kind, MNIST_ARCH, 32, 128, 1), 784)
        for batch in (128, 512):
            rate = pipeline_rate(kind, batch, data, device, args.epochs)
            mfu = rate * flops / (peak * 1e9)
            report(f"{kind}_samples_per_s_b{batch}", rate, "{:.0f}", f"784-512-256-32 {kind.upper()}, Adam")
            report(f"{kind}_mfu_b{batch}", mfu, "{:.2f}", "model FLOP/s / GEMM peak")
            ceiling = step_ceiling(kind, batch, device)
            report(f"{kind}_ceiling_samples_per_s_b{batch}", ceiling, "{:.0f}", "its products and Adam step alone")
            report(f"{kind}_ceiling_fraction_b{batch}", rate / ceiling, "{:.2f}", "samples/s / that ceiling")
            if kind == "ae":
                res[f"mfu_b{batch}"] = mfu
    base = baseline_rate(128, data, device, args.epochs)
    report("baseline_samples_per_s_b128", base, "{:.0f}", "DataLoader(TensorDataset) loop, AE")
    report("baseline_ratio_b128", res["ae_samples_per_s_b128"] / base, "{:.2f}", "train() / baseline")
    import torch

    torch.set_num_threads(args.ensemble_threads)
    seq, ens, ratio = ensemble_speedup(device)
    torch.set_num_threads(args.threads)
    note = f"8 digits AEs (64-48-24-8), 10 epochs, {args.ensemble_threads} thread(s), one after another"
    report("sequential_8_seeds_s", seq, "{:.2f}", note)
    report("ensemble_8_seeds_s", ens, "{:.2f}", "the same 8 as one batched ensemble")
    report("ensemble_speedup", ratio, "{:.2f}", "sequential / ensemble")
    torch.set_num_threads(args.ensemble_threads)
    seq, ens, ratio, n = freeze_sweep_speedup(device)
    torch.set_num_threads(args.threads)
    note = f"one default cell's freeze sweep ({n} trainings), {args.ensemble_threads} thread(s), one after another"
    report("freeze_sweep_sequential_s", seq, "{:.1f}", note)
    report("freeze_sweep_batched_s", ens, "{:.1f}", "the same, as train_members stacks them")
    report("freeze_sweep_speedup", ratio, "{:.2f}", "sequential / batched")
    startup = startup_cost(device.type)
    report("startup_s", startup, "{:.2f}", "process start to first batch of a train job")
    light_startup = light_startup_cost()
    report("light_startup_s", light_startup, "{:.2f}", "process start to the end of an analysis job's imports")
    hours, rate = paper_scale_hours(device, args.paper_samples)
    for kind, seconds in rate.items():
        note = f"{PAPER_STUDY.name}'s largest {kind.upper()}, one ensemble of its seeds, per member"
        report(f"paper_{kind}_member_samples_per_s", 1 / seconds, "{:.0f}", note)
    note = f"{PAPER_STUDY.name}: every rule's model-epochs at those rates, one job at a time (errs long)"
    report("paper_scale_hours", hours, "{:.3g}", f"{note}, on {device.type}")
    # the default study and the DAG need Snakemake, which a bare GPU machine may lack
    has_snakemake = importlib.util.find_spec("snakemake") is not None
    if has_snakemake:
        dag_s, dag_jobs, study = dag_build()
        report("dag_build_s", dag_s, "{:.1f}", f"snakemake -n, {study}")
        report("dag_jobs", dag_jobs, "{:d}", f"jobs in {study}")
    else:
        report("dag_build_s", None, note="snakemake is not installed")
        report("dag_jobs", None)
    if args.skip_study or not has_snakemake:
        report("default_study_s", None)
        report("default_study_3_seeds_s", None)
        report("startup_share", None)
    else:
        wall, n_jobs, n_torch, share = default_study(args.cores, startup, light_startup)
        note = f"config.yaml, --cores {args.cores}, {n_jobs} jobs ({n_torch} in the torch env)"
        report("default_study_s", wall, "{:.0f}", note)
        report("startup_share", share, "{:.2f}", "(torch jobs x startup_s + others x light_startup_s) / (cores x wall)")
        wall, n_jobs, _, _ = default_study(args.cores, startup, light_startup, seeds=3)
        report("default_study_3_seeds_s", wall, "{:.0f}", f"the same with its first 3 seeds, {n_jobs} jobs")
    missing = [k for k in BENCH_KEYS if k not in res]
    assert not missing, missing
    res["unix_time"] = time.time()
    res["provenance"] = io.provenance(str(device), args.threads)
    io.write_json(res, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
