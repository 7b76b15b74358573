"""What the intervention jobs train, from the run configs alone: freeze specs, the runs the freeze sweep covers, the
layers a spec freezes, the stitch pairs.

Snakemake reads this when it parses the workflow (common.smk lists every freeze job's specs; the SLURM resource
estimate counts stitches), so it imports no torch: the workflow's own process may run where only Snakemake is
installed (``--sdm conda``). ``nets.models`` applies a spec to a built model, ``nets.interventions`` trains.
"""

from __future__ import annotations

import re

from aedissect.config import ConfigError

OUTPUT_BIAS_SUFFIX = "+bias"
FREEZE_PATTERN = re.compile(r"(none|encoder|decoder|(prefix|suffix|except)-(\d+))(\+bias)?")
CELL_KEYS = {"datasets": "dataset", "model_kinds": "kind", "architectures": "arch", "bottlenecks": "bottleneck"}


def frozen_layer_set(spec: str, n_layers: int, bottleneck_cut: int) -> tuple[int, ...]:
    """The layers a freeze spec holds fixed: none, encoder (up to and including the bottleneck layer), decoder
    (the rest), prefix-k (first k layers), suffix-k (last k layers), except-l (every layer but layer l:
    retraining one layer). A spec may end in ``+bias``: the output layer's bias is then left to train even where
    its layer is frozen, so that a frozen decoder can still fit the data's mean (see ``interventions``)."""
    match = FREEZE_PATTERN.fullmatch(spec)
    if match is None:
        raise ValueError(
            f"freeze spec {spec!r}: allowed none, encoder, decoder, prefix-K, suffix-K, except-L, each optionally "
            f"followed by {OUTPUT_BIAS_SUFFIX}"
        )
    base, L = match.group(1), n_layers
    if base == "none":
        return ()
    if base == "encoder":
        return tuple(range(bottleneck_cut))
    if base == "decoder":
        return tuple(range(bottleneck_cut, L))
    k = int(match.group(3))
    if match.group(2) == "except":
        if k >= L:
            raise ValueError(f"freeze spec {spec!r}: the model has only layers 0..{L - 1}")
        return tuple(i for i in range(L) if i != k)
    if k > L:
        raise ValueError(f"freeze spec {spec!r}: the model has only {L} layers")
    return tuple(range(k)) if match.group(2) == "prefix" else tuple(range(L - k, L))


def freeze_runs(config: dict, runs: list[dict]) -> list[dict]:
    """The runs of the study the freeze sweep covers: ``interventions.cells`` selects values per key (null: all);
    ``config.check_semantics`` has refused values the study does not have."""
    cells = config["interventions"]["cells"]
    chosen = {column: set(cells[key]) for key, column in CELL_KEYS.items() if cells.get(key) is not None}
    return [run for run in runs if all(run[col] in values for col, values in chosen.items())]


def n_layers(run: dict) -> int:
    return len(run["encoder"]) + 1 + len(run["decoder"]) + 1


def bottleneck_cut(run: dict) -> int:
    return len(run["encoder"]) + 1


def freeze_specs(run: dict, freeze_config: dict) -> list[str]:
    """encoder, decoder and the prefix/suffix sweep: k from ``freeze.k[arch]`` or else every k in 1..L-1.

    A spec that freezes the output layer leaves that layer's bias free (``+bias``): a bias frozen at its random
    init cannot fit the data's mean, so the textbook freeze charges the frozen decoder a loss that is no side's
    work and pushes the encoder share towards 0. With ``freeze.frozen_output_bias`` the textbook variant (the
    bias frozen too) trains as well, the control that shows how large that charge is.
    """
    L = n_layers(run)
    ks = freeze_config["k"].get(run["arch"]) or list(range(1, L))
    bad = [k for k in ks if not 1 <= k <= L - 1]
    if bad:
        raise ConfigError(f"config key interventions.freeze.k.{run['arch']}: {bad} outside 1..{L - 1}")
    specs = []
    for spec in ["encoder", "decoder", *(f"{side}-{k}" for side in freeze_config["sides"] for k in sorted(ks))]:
        if L - 1 not in frozen_set(run, spec)[0]:
            specs.append(spec)
            continue
        specs.append(spec + OUTPUT_BIAS_SUFFIX)
        if freeze_config["frozen_output_bias"]:
            specs.append(spec)
    return specs


def frozen_set(run: dict, spec: str) -> tuple[tuple[int, ...], bool]:
    """The layers a spec freezes for this run (without building the model), and whether the output layer's bias
    is frozen with them: what makes two specs the same training."""
    L = n_layers(run)
    layers = frozen_layer_set(spec, L, bottleneck_cut(run))
    return layers, L - 1 in layers and not spec.endswith(OUTPUT_BIAS_SUFFIX)


def output_bias(frozen: bool) -> str:
    """The ``output_bias`` column of a freeze variant: whether the decoder's output bias stayed at init."""
    return "frozen" if frozen else "trained"


def stitch_pairs(runs: list[dict], pair_types: list[str]) -> list[tuple[int, int, str]]:
    """(A, B, type) index pairs: ``self`` always (the identity control); ``seed``: same architecture, other
    seed; ``arch``: other architecture, same seed; ``arch-seed``: other architecture and seed."""
    pairs = []
    for i, a in enumerate(runs):
        for j, b in enumerate(runs):
            same_arch, same_seed = a["arch"] == b["arch"], a["seed"] == b["seed"]
            kind = "self" if i == j else "seed" if same_arch else "arch" if same_seed else "arch-seed"
            if kind == "self" or kind in pair_types:
                pairs.append((i, j, kind))
    return pairs
