"""docs/measured.json: the measured numbers that the README, config.yaml, the docs and ``aedissect studies`` quote,
each with the commit and date it was measured at, so that no timing is typed by hand.

``make bench`` writes results/bench.json, then runs ``python -m aedissect.measured results/bench.json``, which
keeps the keys in ``KEYS`` here and rewrites every quote of them in the documents (``DOCUMENTS``): a quote is
``<!-- measured:KEY -->text<!-- /measured -->``, its text ``render(KEY)``. A key the bench skipped
(``default_study_s`` under ``--skip-study``) keeps its earlier measurement, with that measurement's own commit and
date. tests/test_numbers.py fails when a quote is not the measured value or a wall time is typed outside a quote.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from aedissect import io
from aedissect.architectures import cut_shapes, has_conv, layer_macs
from aedissect.formatting import number

REPO = Path(__file__).resolve().parents[2]
MEASURED_PATH = REPO / "docs" / "measured.json"
DOCUMENTS = ("README.md", "docs/*.md")  # where quotes are rewritten (config.yaml quotes none: its comments point here)
QUOTE = re.compile(r"<!-- measured:(?P<key>[a-z0-9_]+) -->(?P<text>.*?)<!-- /measured -->", re.S)

# what the documents and the command line quote: key -> what it is
KEYS = {
    "gemm_peak_gflops": "fp32 2048^3 matrix multiply, GFLOP/s",
    "ae_samples_per_s_b128": "MNIST-shaped AE (784-512-256-32) trained by training.train, samples/s at batch 128",
    "ae_samples_per_s_b512": "the same at batch 512",
    "vae_samples_per_s_b128": "the same VAE at batch 128",
    "vae_samples_per_s_b512": "the same VAE at batch 512",
    "paper_ae_member_samples_per_s": "studies/mnist.yaml's largest AE, one ensemble of its seeds, samples/s per member",
    "paper_vae_member_samples_per_s": "the same VAE",
    "ensemble_8_seeds_s": "8 digits AEs (64-48-24-8, 10 epochs) trained as one batched ensemble, s",
    "ensemble_speedup": "8 digits AEs one after another / as one batched ensemble",
    "startup_s": "a train job's start-up: process start to its first batch, s",
    "paper_scale_hours": "studies/mnist.yaml's training work at the per-member rates, one job at a time, hours",
    "dag_jobs": "jobs of the largest study's DAG",
    "default_study_s": "config.yaml run with --cores 2 in a scratch directory, s",
}


def load(path: str | Path = MEASURED_PATH) -> dict[str, dict]:
    """key -> {"value", "commit", "date", "threads", "device"}; empty when nothing was measured yet."""
    path = Path(path)
    return json.loads(path.read_text())["measurements"] if path.exists() else {}


def value(measured: dict[str, dict], key: str) -> float | None:
    entry = measured.get(key)
    return None if entry is None else entry["value"]


def from_bench(bench: dict, earlier: dict[str, dict]) -> dict[str, dict]:
    """The measurements of one bench.json over the earlier ones: a key the bench measured replaces its entry."""
    provenance = bench["provenance"]
    stamp = {
        "commit": provenance["git_commit"][:7],
        "date": time.strftime("%Y-%m-%d", time.gmtime(bench["unix_time"])),
        "threads": provenance["threads"],
        "device": provenance["device"],
    }
    out = {key: entry for key, entry in earlier.items() if key in KEYS}
    for key in KEYS:
        if bench.get(key) is not None:
            out[key] = {"value": bench[key], **stamp}
    return out


# the bench's digits-sized ensemble (bench.ensemble_speedup): 8 seeds x 10 epochs over digits' 1,437 training
# samples of a 64-48-24-8-24-48-64 AE
SMALL_NET_SAMPLES = 8 * 10 * 1437
SMALL_NET_WIDTHS = (64, 48, 24, 8, 24, 48, 64)


def weight_macs(widths) -> int:
    """Multiply-adds of one sample through a stack of dense layers of these widths (input first)."""
    return sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))


def run_macs(run: dict, in_dim: int) -> int:
    """A run's weight multiply-adds per sample, input to reconstruction (a VAE's code head counted once); a net
    with convolutions counts each position's kernel (``architectures.layer_macs``)."""
    if not has_conv(run):
        return weight_macs((in_dim, *run["encoder"], run["bottleneck"], *run["decoder"], in_dim))
    shapes = cut_shapes(run["encoder"], run["bottleneck"], run["decoder"], run["input_shape"], run["arch"])
    return sum(layer_macs(run["encoder"], run["decoder"], shapes))


def cost_model(measured: dict[str, dict], large_net_macs: int) -> dict[str, tuple[float, float]] | None:
    """Per model kind, training seconds per sample and ensemble member as ``a + b x MACs``, through the bench's two
    measured ensembles: the digits-sized AE (overhead-bound) and studies/mnist.yaml's largest net
    (``large_net_macs`` multiply-adds; compute-bound). None when either was not measured."""
    together = value(measured, "ensemble_8_seeds_s")
    if together is None:
        return None
    small = (weight_macs(SMALL_NET_WIDTHS), together / SMALL_NET_SAMPLES)
    model = {}
    for kind in ("ae", "vae"):
        rate = value(measured, f"paper_{kind}_member_samples_per_s")
        if rate is None:
            return None
        slope = (1 / rate - small[1]) / (large_net_macs - small[0])
        model[kind] = (small[1] - slope * small[0], slope)
    return model


def duration(seconds: float) -> str:
    """A wall time as a person reads it: 2.54 s, 14 min 49 s, 3 h 05 min."""
    if seconds < 60:
        return f"{number(seconds)} s"
    seconds = round(seconds)
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def render(measured: dict[str, dict], key: str) -> str:
    """How a document quotes a measurement: a time as 14 min 49 s, hours to three figures, a rate in whole samples
    per second, a count as is; ``stamp`` is where and when the rates were measured."""
    if key == "stamp":
        entry = measured["paper_ae_member_samples_per_s"]
        return f"{entry['device']}, {entry['threads']} threads, commit {entry['commit']}, {entry['date']}"
    entry = measured.get(key)
    if entry is None:
        return "not measured yet"
    v = entry["value"]
    if key.endswith("_hours"):
        return f"{number(v)} hours"
    if key.endswith("_samples_per_s") or key.endswith(("_per_s_b128", "_per_s_b512")):
        return f"{round(v):,} samples/s"
    if key.endswith("_s"):
        stamp = measured.get("paper_ae_member_samples_per_s", {})
        same = (entry["commit"], entry["date"]) == (stamp.get("commit"), stamp.get("date"))
        return duration(v) if same else f"{duration(v)} (commit {entry['commit']}, {entry['date']})"
    return number(v)


def quoted(text: str, measured: dict[str, dict]) -> str:
    """A document's text with every quote rendered from the measurements."""
    return QUOTE.sub(lambda m: f"<!-- measured:{m['key']} -->{render(measured, m['key'])}<!-- /measured -->", text)


def documents(root: Path = REPO) -> list[Path]:
    return sorted(path for pattern in DOCUMENTS for path in root.glob(pattern))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aedissect.measured", description=__doc__.split("\n")[0])
    parser.add_argument("bench", help="the bench's output (results/bench.json)")
    parser.add_argument("--out", default=str(MEASURED_PATH), help="the measured file (docs/measured.json)")
    args = parser.parse_args(argv)
    try:
        bench = json.loads(Path(args.bench).read_text())
    except OSError as err:
        print(f"{parser.prog}: {args.bench}: cannot read it ({err.strerror})", file=sys.stderr)
        return 1
    measurements = from_bench(bench, load(args.out))
    io.write_json({"about": KEYS, "measurements": measurements}, args.out)
    print(f"{args.out}: {len(measurements)} measurements")
    for path in documents():
        text = path.read_text()
        if quoted(text, measurements) != text:
            path.write_text(quoted(text, measurements))
            print(f"{path.relative_to(REPO)}: quotes rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
