"""Markdown tables (3 significant figures) from scratch/results/<tag>.jsonl."""
import json, sys

def g(x, n=3):
    if x is None: return "–"
    return f"{x:.{n}g}"

def table(tag):
    rows = [json.loads(l) for l in open(f"scratch/results/{tag}.jsonl")]
    out = ["| data | z | kind | arch | test MSE | PCA-z MSE | ratio (mean) | ratio (worst seed) | max angle ° | eigen gap | conv (mean / max) | wall s | control |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    total = 0.0
    for r in rows:
        total += r["wall"]
        ctrl = ""
        if r["kind"] == "ae" and r["arch"] in ("linear", "enc-heavy"):
            ok = r["ratio"] <= 1.02
            ctrl = ("PASS" if ok else "FAIL") + " ≤2%"
            if r["arch"] == "linear" and r["gap"] >= 1.3:
                ctrl += "; angle " + ("PASS" if r["angle_max"] <= 5 else "FAIL")
            if r["ratio_max"] > 1.02 and ok:
                ctrl += " (worst seed >2%)"
        elif r["kind"] == "vae" and r["arch"] in ("linear", "enc-heavy"):
            ctrl = "ref. only"
        out.append(f"| {r['dataset']} | {r['z']} | {r['kind']} | {r['arch']} | {g(r['mse'])} | {g(r['pca'])} | {g(r['ratio'])} | "
                   f"{g(r['ratio_max'])} | {g(r['angle_max'])} | {g(r['gap'])} | {g(r['conv_mean'], 2)} / {g(r['conv_max'], 2)} | "
                   f"{g(r['wall'])} | {ctrl} |")
    out.append(f"\nTotal training wall time of the {len(rows)} cells (10 seeds each, threads=1): **{total:.0f} s**.")
    return "\n".join(out)

for tag in sys.argv[1:]:
    print(f"### {tag}\n\n{table(tag)}\n")
