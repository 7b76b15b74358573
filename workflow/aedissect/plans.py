"""What each experiment's jobs cover and train, from the study config and the run configs alone: the grid cells,
intervention groups and data sets runs fall in, the runs a selection (``interventions.cells``, ``truncation.select``)
picks, freeze specs and the layers a spec freezes, the stitch pairs and the cuts each is stitched at.

Snakemake reads this when it parses the workflow (common.smk asks it for every job's runs; the SLURM resource
estimate counts stitches), so it imports no torch: the workflow's own process may run where only Snakemake is
installed (``--sdm conda``). ``nets.models`` applies a spec to a built model, ``nets.interventions`` trains.
"""

from __future__ import annotations

import re

from aedissect.config import ConfigError, Run, run_cell, run_group

OUTPUT_BIAS_SUFFIX = "+bias"
CODE_MAP_SUFFIX = "+code"
LOGVAR_SUFFIX = "+logvar"
# base, then the modifiers in this order: +code (a trainable affine map on the code), +logvar (the VAE's log-variance
# head trains though its layer is frozen), +bias (the output layer's bias trains though its layer is frozen)
FREEZE_PATTERN = re.compile(r"(none|encoder|decoder|both|(prefix|suffix|except)-(\d+))(\+code)?(\+logvar)?(\+bias)?")
# a frozen variant whose trainable part is linear given its frozen features is converged when its training MSE is
# within this fraction of the closed-form (least-squares) optimum from those features
CONVERGED_TOLERANCE = 0.02
# the keys of a selection (interventions.cells, truncation.select) and the run field each filters
SELECTION_KEYS = {
    "datasets": "dataset",
    "model_kinds": "kind",
    "architectures": "arch",
    "bottlenecks": "bottleneck",
    "activations": "activation",
}


def parse_spec(spec: str) -> dict:
    """A freeze spec's parts: ``base`` (none, encoder, decoder, both, prefix-K, suffix-K, except-L), ``side``
    (the base without its number), ``k`` (the number or None), and whether it trains the code map (``code``),
    the VAE's log-variance head (``logvar``) and the output bias (``bias``) where their layers are frozen."""
    match = FREEZE_PATTERN.fullmatch(spec)
    if match is None:
        raise ValueError(
            f"freeze spec {spec!r}: allowed none, encoder, decoder, both, prefix-K, suffix-K, except-L, each "
            f"optionally followed by {CODE_MAP_SUFFIX}, {LOGVAR_SUFFIX}, {OUTPUT_BIAS_SUFFIX} in this order"
        )
    return {
        "base": match.group(1),
        "side": match.group(2) or match.group(1),
        "k": None if match.group(3) is None else int(match.group(3)),
        "code": match.group(4) is not None,
        "logvar": match.group(5) is not None,
        "bias": match.group(6) is not None,
    }


def frozen_layer_set(spec: str, n_layers: int, bottleneck_cut: int) -> tuple[int, ...]:
    """The layers a freeze spec holds fixed: none, encoder (up to and including the bottleneck layer), decoder
    (the rest), both (every layer), prefix-k (first k layers), suffix-k (last k layers), except-l (every layer but
    layer l: retraining one layer). Modifiers leave parts of frozen layers to train (``parse_spec``): ``+bias``
    the output layer's bias, so that a frozen decoder can still fit the data's mean; ``+code`` adds a trainable
    affine map on the code (z x z and a bias, started at the identity), the frozen encoder's mirror of that bias;
    ``+logvar`` the VAE's log-variance head (see ``interventions``)."""
    parts = parse_spec(spec)
    base, L = parts["base"], n_layers
    if base == "none":
        return ()
    if base == "encoder":
        return tuple(range(bottleneck_cut))
    if base == "decoder":
        return tuple(range(bottleneck_cut, L))
    if base == "both":
        return tuple(range(L))
    k = parts["k"]
    if parts["side"] == "except":
        if k >= L:
            raise ValueError(f"freeze spec {spec!r}: the model has only layers 0..{L - 1}")
        return tuple(i for i in range(L) if i != k)
    if k > L:
        raise ValueError(f"freeze spec {spec!r}: the model has only {L} layers")
    return tuple(range(k)) if parts["side"] == "prefix" else tuple(range(L - k, L))


def cells(runs: list[Run]) -> list[str]:
    """The grid cells of ``runs``, in grid order (a cell: every seed of one configuration, one train job)."""
    return list(dict.fromkeys(run_cell(run) for run in runs))


def groups(runs: list[Run]) -> list[str]:
    """The intervention groups of ``runs``, in grid order (a group: every architecture and seed of one data set,
    kind, bottleneck and activation; one criticality and one stitching job)."""
    return list(dict.fromkeys(run_group(run) for run in runs))


def datasets(runs: list[Run]) -> list[str]:
    return list(dict.fromkeys(run["dataset"] for run in runs))


def group_runs(runs: list[Run], group: str) -> list[Run]:
    """The runs of one intervention group, in grid order."""
    return [run for run in runs if run_group(run) == group]


def dataset_runs(runs: list[Run], dataset: str) -> list[Run]:
    """The runs of one data set, in grid order (the controls job checks them against one set of optima)."""
    return [run for run in runs if run["dataset"] == dataset]


def selected(runs: list[Run], selection: dict) -> list[Run]:
    """The runs a selection picks: per key of ``SELECTION_KEYS`` the values allowed (null or absent: any);
    ``config.check_semantics`` has refused values the study does not have."""
    chosen = {field: selection[key] for key, field in SELECTION_KEYS.items() if selection.get(key) is not None}
    return [run for run in runs if all(run[field] in values for field, values in chosen.items())]


def intervention_runs(config: dict, runs: list[Run]) -> list[Run]:
    """The runs every intervention covers (the freeze sweep, re-initialisation and retraining, stitching): those
    ``interventions.cells`` selects."""
    return selected(runs, config["interventions"]["cells"])


def truncation_runs(config: dict, runs: list[Run]) -> list[Run]:
    """The runs whose layers are profiled: those ``truncation.select`` selects."""
    return selected(runs, config["truncation"]["select"])


def truncation_options(config: dict) -> dict:
    """The probe settings of the truncate jobs: the truncation section without the selection and the threads, so
    that selecting more cells or giving the jobs more threads reruns none of them."""
    return {key: value for key, value in config["truncation"].items() if key not in ("select", "threads")}


def freeze_specs_by_run(config: dict, runs: list[Run]) -> dict[str, list[str]]:
    """Every run's freeze specs (``freeze_specs``), by run id: a bad ``interventions.freeze.k`` fails at parse time
    for every run, not only for those the sweep covers."""
    return {run["run_id"]: freeze_specs(run, config["interventions"]["freeze"], sweeps(run, config)) for run in runs}


def n_layers(run: Run) -> int:
    return len(run["encoder"]) + 1 + len(run["decoder"]) + 1


def bottleneck_cut(run: Run) -> int:
    return len(run["encoder"]) + 1


def symmetric_specs(run: Run, freeze_config: dict) -> tuple[str, str] | None:
    """The symmetric design's frozen-encoder and both-frozen specs (None when ``freeze.symmetric`` is off).

    The frozen decoder keeps a trainable output bias (``decoder+bias``); its mirror, the frozen encoder, keeps a
    trainable affine map on its code (``+code``, ``freeze.code_map``) and, for the VAE, its log-variance head
    (``+logvar``, ``freeze.logvar_head``). With both frozen only those affine pieces train: what random features
    alone give, the L_both of the Shapley share. E.g. ``encoder+code`` / ``both+code+bias`` for the AE,
    ``encoder+code+logvar`` / ``both+code+logvar+bias`` for the VAE.
    """
    if not freeze_config.get("symmetric", True):
        return None
    mirror = CODE_MAP_SUFFIX if freeze_config.get("code_map", True) else ""
    if run["kind"] == "vae" and freeze_config.get("logvar_head", True):
        mirror += LOGVAR_SUFFIX
    return "encoder" + mirror, "both" + mirror + OUTPUT_BIAS_SUFFIX


def sweeps(run: Run, config: dict) -> bool:
    """Whether the run's freeze sweep includes prefix-k / suffix-k: its seed is among the first
    ``interventions.freeze.sweep_seeds`` of ``seeds``. The sweep is a curve read per family; the encoder share,
    whose intervals need every seed, uses only encoder, decoder and the symmetric design."""
    n = config["interventions"]["freeze"].get("sweep_seeds")
    return n is None or run["seed"] in config["seeds"][:n]


def freeze_specs(run: Run, freeze_config: dict, sweep: bool = True) -> list[str]:
    """encoder, decoder, the symmetric design and, with ``sweep``, the prefix/suffix sweep: k from
    ``freeze.k[arch]`` or else every k in 1..L-1.

    A spec that freezes the output layer leaves that layer's bias free (``+bias``): a bias frozen at its random
    init cannot fit the data's mean, so the textbook freeze charges the frozen decoder a loss that is no side's
    work and pushes the encoder share towards 0. With ``freeze.frozen_output_bias`` the textbook variant (the
    bias frozen too) trains as well, the control that shows how large that charge is. With ``freeze.symmetric``
    the frozen encoder's mirror and the both-frozen baseline train too (``symmetric_specs``).
    """
    L = n_layers(run)
    ks = freeze_config["k"].get(run["arch"]) or list(range(1, L))
    bad = [k for k in ks if not 1 <= k <= L - 1]
    if bad:
        raise ConfigError(f"config key interventions.freeze.k.{run['arch']}: {bad} outside 1..{L - 1}")
    symmetric = symmetric_specs(run, freeze_config)
    mirror = [symmetric[0]] if symmetric and symmetric[0] != "encoder" else []
    both = [symmetric[1]] if symmetric else []
    swept = [f"{side}-{k}" for side in freeze_config["sides"] for k in sorted(ks)] if sweep else []
    specs = []
    for spec in ["encoder", *mirror, "decoder", *both, *swept]:
        if spec.endswith(OUTPUT_BIAS_SUFFIX) or L - 1 not in frozen_set(run, spec)[0]:
            specs.append(spec)
            continue
        specs.append(spec + OUTPUT_BIAS_SUFFIX)
        if freeze_config["frozen_output_bias"]:
            specs.append(spec)
    return specs


def frozen_set(run: Run, spec: str) -> tuple[tuple[int, ...], bool]:
    """The layers a spec freezes for this run (without building the model), and whether the output layer's bias
    is frozen with them: what makes two specs the same training."""
    L = n_layers(run)
    layers = frozen_layer_set(spec, L, bottleneck_cut(run))
    return layers, L - 1 in layers and not spec.endswith(OUTPUT_BIAS_SUFFIX)


def variant_key(run: Run, spec: str) -> tuple:
    """What makes two specs the same training: the frozen layers, whether the output bias is frozen with them,
    whether a code map trains and whether the VAE's frozen log-variance head trains."""
    parts = parse_spec(spec)
    layers, bias_frozen = frozen_set(run, spec)
    logvar = parts["logvar"] and run["kind"] == "vae" and bottleneck_cut(run) - 1 in layers
    return layers, bias_frozen, parts["code"], logvar


def output_bias(frozen: bool) -> str:
    """The ``output_bias`` column of a freeze variant: whether the decoder's output bias stayed at init."""
    return "frozen" if frozen else "trained"


def stitch_pairs(runs: list[Run], pair_types: list[str]) -> list[tuple[int, int, str]]:
    """(A, B, type) index pairs: ``self`` always (the identity control); ``seed``: same architecture, B the
    next seed of that architecture (cyclically: each seed is A once and B once, so n seeds give n pairs rather
    than n(n-1), and the pairs stay independent enough for an interval over them); ``arch``: other architecture,
    same seed; ``arch-seed``: other architecture and seed."""
    seeds_of = {}
    for i, run in enumerate(runs):
        seeds_of.setdefault(run["arch"], []).append((run["seed"], i))
    next_seed = {}
    for members in seeds_of.values():
        members.sort()
        for (_, i), (_, j) in zip(members, members[1:] + members[:1], strict=True):
            next_seed[i] = j
    pairs = []
    for i, a in enumerate(runs):
        for j, b in enumerate(runs):
            same_arch, same_seed = a["arch"] == b["arch"], a["seed"] == b["seed"]
            kind = "self" if i == j else "seed" if same_arch else "arch" if same_seed else "arch-seed"
            if kind == "self" or (kind in pair_types and (kind != "seed" or next_seed[i] == j)):
                pairs.append((i, j, kind))
    return pairs


def stitch_cuts(run_a: dict, run_b: dict, pair_type: str) -> list[tuple[int, int]]:
    """The (cut of A, cut of B) a stitch pair is fitted at: every hidden cut 1..L-1 for a pair of one architecture
    (``self``, ``seed``: Csiszarik et al. 2021), A's bottleneck into B's for a pair of two (``arch``,
    ``arch-seed``: A's encoder into B's decoder)."""
    if pair_type in ("self", "seed"):
        return [(cut, cut) for cut in range(1, n_layers(run_b))]
    return [(bottleneck_cut(run_a), bottleneck_cut(run_b))]
