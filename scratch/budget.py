"""Budget search: train one 10-seed vmapped ensemble per cell exactly as jobs.train_runs does, compare with PCA-z.

Usage: budget.py TAG --epochs E --batch B --lr LR [--schedule S] [--datasets ...] [--kinds ...] [--archs ...] [--zs ...]
Appends one JSON line per cell to scratch/results/TAG.jsonl.
"""
import argparse, copy, json, math, sys, time
from pathlib import Path

import numpy as np
import torch
import yaml
from scipy.linalg import subspace_angles

from aedissect import config as cfgmod
from aedissect.data import build
from aedissect.datasets import data_options
from aedissect.ensemble import train_members
from aedissect.models import build_model
from aedissect.training import reconstruction, setup_torch

ROOT = Path(__file__).resolve().parents[1]
ARCHS = {
    "symmetric": ("symmetric", [48, 24], [24, 48], "relu"),
    "symmetric-shallow": ("symmetric", [32], [32], "relu"),
    "enc-heavy": ("encoder-heavy", [48, 32, 24], [], "relu"),
    "dec-heavy": ("decoder-heavy", [], [24, 32, 48], "relu"),
    "enc-matched": ("encoder-heavy", [48, 32, 24], [24], "relu"),
    "dec-matched": ("decoder-heavy", [24], [24, 32, 48], "relu"),
    "linear": ("symmetric", [42], [42], "linear"),
}

ap = argparse.ArgumentParser()
ap.add_argument("tag")
ap.add_argument("--epochs", type=int, default=40)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--lr", type=float, default=2e-3)
ap.add_argument("--schedule", default=None)
ap.add_argument("--betas", default=None)
ap.add_argument("--datasets", nargs="+", default=["digits", "factors"])
ap.add_argument("--kinds", nargs="+", default=["ae", "vae"])
ap.add_argument("--archs", nargs="+", default=list(ARCHS))
ap.add_argument("--zs", nargs="+", type=int, default=[4, 8])
ap.add_argument("--seeds", type=int, default=10)
args = ap.parse_args()

config = yaml.safe_load(open(ROOT / "config.yaml"))
config["architectures"] = {k: {"family": f, "encoder": e, "decoder": d} for k, (f, e, d, _) in ARCHS.items()}
cfgmod.validate(config)
config["training"].update(epochs=args.epochs, batch_size=args.batch, lr=args.lr, keep_epochs=[1, 5])
if args.schedule:
    config["training"]["lr_schedule"] = args.schedule
if args.betas:
    config["training"]["betas"] = [float(b) for b in args.betas.split(",")]
dev = setup_torch(1, "cpu")
out = open(ROOT / "scratch/results" / f"{args.tag}.jsonl", "a")

for ds in args.datasets:
    data = build(ds, data_options(ds, config["data"]))
    xtr, xte = data["x_train"].double().numpy(), data["x_test"].double().numpy()
    mu = xtr.mean(0)
    evals, evecs = np.linalg.eigh(np.cov(xtr - mu, rowvar=False, bias=True))
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    for z in args.zs:
        V = evecs[:, :z]
        pca = float((((xte - mu) @ V @ V.T + mu - xte) ** 2).mean())
        pca_train = float((((xtr - mu) @ V @ V.T + mu - xtr) ** 2).mean())
        gap = float(evals[z - 1] / evals[z])
        for kind in args.kinds:
            for arch in args.archs:
                act = ARCHS[arch][3]
                runs = [cfgmod.resolve_run(config, ds, kind, arch, z, act, s) for s in range(args.seeds)]
                t0 = time.perf_counter()
                res = train_members(runs, data, dev, [f"s{s}" for s in range(args.seeds)], ensemble=True)
                wall = time.perf_counter() - t0
                mses, angles, convs, train_mses = [], [], [], []
                for run, r in zip(runs, res):
                    if r["status"] != "ok":
                        mses.append(float("nan")); continue
                    model = build_model(run, xtr.shape[1]); model.load_state_dict(r["state"])
                    with torch.no_grad():
                        mses.append(float((reconstruction(model, data["x_test"], run) - data["x_test"]).pow(2).mean()))
                        train_mses.append(float((reconstruction(model, data["x_train"], run) - data["x_train"]).pow(2).mean()))
                    if not model.layers[model.bottleneck_cut - 1:]:
                        pass
                    if act == "linear" or not run["decoder"]:
                        W = None
                        for layer in model.layers[model.bottleneck_cut:]:
                            w = layer[0].weight.detach().double().numpy()
                            W = w if W is None else w @ W
                        angles.append(float(np.degrees(subspace_angles(W, V).max())))
                    loss = np.array([h["test_loss"] for h in r["history"]])
                    if kind == "vae":
                        sig = run["vae"]["sigma"]; d = xtr.shape[1]
                        loss = loss - (d * math.log(sig) + 0.5 * d * math.log(2 * math.pi))
                    k = max(1, round(0.1 * len(loss)))
                    convs.append(float((loss[-k - 1] - loss[-1]) / loss[-1]))
                rec = {
                    "dataset": ds, "z": z, "kind": kind, "arch": arch, "epochs": args.epochs, "batch": args.batch,
                    "lr": args.lr, "schedule": args.schedule, "betas": args.betas, "seeds": args.seeds,
                    "mse": float(np.nanmean(mses)), "mse_max": float(np.nanmax(mses)), "mse_seeds": mses,
                    "train_mse": float(np.mean(train_mses)), "pca": pca, "pca_train": pca_train,
                    "ratio": float(np.nanmean(mses)) / pca, "ratio_max": float(np.nanmax(mses)) / pca,
                    "gap": gap, "angle_max": max(angles) if angles else None,
                    "angle_mean": float(np.mean(angles)) if angles else None,
                    "conv_mean": float(np.mean(convs)), "conv_max": float(np.max(convs)), "wall": wall,
                    "n_diverged": sum(r["status"] != "ok" for r in res),
                }
                out.write(json.dumps(rec) + "\n"); out.flush()
                print(f"{ds} z{z} {kind} {arch:18s} mse {rec['mse']:.4g} pca {pca:.4g} ratio {rec['ratio']:.3f} "
                      f"(max {rec['ratio_max']:.3f}) ang {rec['angle_max']} gap {gap:.2f} conv {rec['conv_mean']:.2e} "
                      f"wall {wall:.1f}s", flush=True)
