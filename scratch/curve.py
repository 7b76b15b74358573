"""Learning curve (mean over 10 seeds of test MSE / PCA-z) of one cell, and its dead ReLU units at the end."""
import sys, json, time
import numpy as np, torch, yaml
sys.argv += []
from aedissect import config as cfgmod
from aedissect.data import build
from aedissect.datasets import data_options
from aedissect.ensemble import train_members
from aedissect.models import build_model
from aedissect.training import setup_torch
ds, z, arch, epochs, batch, lr, sched = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), sys.argv[7]
kind = sys.argv[8] if len(sys.argv) > 8 else "ae"
ARCHS = {"enc-heavy": ([48, 32, 24], []), "linear": ([42], [42]), "symmetric": ([48, 24], [24, 48]), "enc-matched": ([48, 32, 24], [24])}
config = yaml.safe_load(open("config.yaml"))
config["architectures"][arch] = {"family": "symmetric", "encoder": ARCHS[arch][0], "decoder": ARCHS[arch][1]}
config["training"].update(epochs=epochs, batch_size=batch, lr=lr)
if sched != "constant": config["training"]["lr_schedule"] = sched
dev = setup_torch(1, "cpu")
data = build(ds, data_options(ds, config["data"]))
xtr = data["x_train"].double().numpy(); xte = data["x_test"].double().numpy(); mu = xtr.mean(0)
ev, V = np.linalg.eigh(np.cov(xtr - mu, rowvar=False, bias=True)); V = V[:, ::-1][:, :z]
pca = float((((xte - mu) @ V @ V.T + mu - xte) ** 2).mean())
act = "linear" if arch == "linear" else "relu"
runs = [cfgmod.resolve_run(config, ds, kind, arch, z, act, s) for s in range(10)]
t = time.perf_counter()
res = train_members(runs, data, dev, [f"s{s}" for s in range(10)])
print("wall", time.perf_counter() - t)
H = np.array([[h["test_loss"] for h in r["history"]] for r in res]) / pca
marks = sorted(set([1, 2, 5, 10, 20, 40, 60, 80, 100, 150, 200, 300, epochs]) & set(range(1, epochs + 1)))
for e in marks: print(e, "mean %.3f min %.3f max %.3f" % (H[:, e - 1].mean(), H[:, e - 1].min(), H[:, e - 1].max()))
for r, run in zip(res, runs):
    m = build_model(run, xtr.shape[1]); m.load_state_dict(r["state"])
    cuts = m.all_cuts(data["x_train"])
    dead = [int(((c > 0).sum(0) == 0).sum()) for c in cuts[1:m.bottleneck_cut]]
    code = cuts[m.bottleneck_cut][:, :z].detach().double()
    sv = torch.linalg.svdvals(code - code.mean(0))
    alive_last = cuts[m.bottleneck_cut - 1] if m.bottleneck_cut > 1 else None
    always_on = int(((alive_last > 0).all(0)).sum()) if alive_last is not None else -1
    print("seed", run["seed"], "final ratio %.3f" % H[run["seed"], -1], "dead units per encoder layer", dead,
          "always-on units before code", always_on, "code sv ratio min/max %.3g" % float(sv[-1] / sv[0]))
