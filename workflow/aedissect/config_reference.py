"""The config reference (docs/config.md), generated from the config schema's ``description:`` fields.

``render(schema)`` turns workflow/schemas/config.schema.yaml into Markdown: one section per top-level key,
one table row per key path (nested keys too; an architecture's keys as ``architectures.<name>.*``) with what
the schema allows, its default and its description. ``aedissect config-reference`` prints it and
``aedissect config-reference --check`` fails when docs/config.md differs, so the two cannot drift.

Standard library only (the schema is read by the caller): no torch, no pandas.
"""

from __future__ import annotations

from pathlib import Path

# the repository's copy of the page (workflow/aedissect/ -> the repository root)
DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "config.md"

INTRO = """\
# Config reference

<!-- Generated from workflow/schemas/config.schema.yaml by `aedissect config-reference`; do not edit.
     Change a key's description: in the schema, then run: aedissect config-reference > docs/config.md -->

Every key of a study config (`config.yaml`, `studies/*.yaml`; `--configfile` replaces `config.yaml`, it is not
merged with it). The config is validated against `workflow/schemas/config.schema.yaml` before any job starts
(and by `aedissect check`): a wrong type or an impossible value stops Snakemake with
`config key <dotted.path>: <what is wrong>`, an unknown key with the nearest valid one
(``unknown key `bottleneck` at the top level: did you mean `bottlenecks`?``). Checks the schema cannot express are
in `aedissect.config` (`check_semantics`): a bottleneck wider than the encoder layer before it (unless
`allow_wide_bottleneck`), repeated entries, and selections (`truncation.select`, `interventions.cells`,
`interventions.freeze.k`) naming a value the study does not have. A freeze `k` outside 1..L−1 is refused when the
freeze jobs are planned.

`--config` overrides keys of the config file, e.g. `--config 'seeds=[0, 1]' 'training={epochs: 5}'` (a
mapping is merged into its section; values are typed as a config file types them, then validated like it).

*required*: the key has no default and must be written out; the default study's values are in `config.yaml`.
Every other key may be left out, and so may every section a study does not use (`data`, `vae`, `figures`, ...):
the validator fills in the default of each key it does not find. Numbers may be written `0.01`, `1e-2` or
`1.0e-2`: config files are read with YAML 1.2's numbers (PyYAML's YAML 1.1 would read `1e-2` as text). Each rule
depends only on the keys it uses: a changed figure setting redraws figures only, a changed training setting
retrains only the affected cells and what is computed from them.

## A minimal study

An AE-only study of the digits with two architectures, one bottleneck and three seeds; everything it leaves out
takes its default:

```yaml
datasets: [digits]
model_kinds: [ae]
architectures:                 # any names; family is symmetric, encoder-heavy, decoder-heavy or linear (conv-symmetric,
                               # conv-encoder, conv-decoder: with {conv: ...} and {deconv: ...} layers, image data only)
  symmetric:
    family: symmetric
    encoder: [32]
    decoder: [32]
  enc-heavy:
    family: encoder-heavy
    encoder: [48, 24]
    decoder: []
bottlenecks: [4]
activations: [relu]
seeds: [0, 1, 2]
training:
  epochs: 20
  batch_size: 64
  lr: 1e-2
```

Saved as `studies/minimal.yaml`, `aedissect check studies/minimal.yaml` validates it (6 runs) and
`snakemake -n --configfile studies/minimal.yaml` lists its jobs.
"""


def _code(value) -> str:
    """A value as YAML flow style, in backticks."""
    return f"`{_flow(value)}`"


def _flow(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    return str(value)


def _bounds(node: dict) -> list[str]:
    out = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in node:
            out.append(f"{sign} {node[key]}")
    if "multipleOf" in node:
        out.append(f"a multiple of {node['multipleOf']}")
    return out


def allowed(node: dict) -> str:
    """What the schema allows for one key, in words: type or enum, bounds, item and name constraints."""
    if "enum" in node:
        return "one of " + ", ".join(_code(v) for v in node["enum"])
    if "oneOf" in node:
        return " or ".join(_form(sub) for sub in node["oneOf"])
    types = node.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    out = []
    for kind in types:
        if kind == "array":
            out.append(_array(node))
        elif kind == "object":
            out.append(_object(node))
        elif kind != "null":
            word = f"non-empty {kind}" if node.get("minLength") else kind
            out.append(" ".join([word, ", ".join(_bounds(node))]).strip())
    if "null" in types:
        out.append("`null`")
    return " or ".join(out)


def _form(node: dict) -> str:
    """One form a ``oneOf`` allows: what it is, and a mapping's keys (the required ones first)."""
    if node.get("type") == "object":
        keys = [
            *node.get("required", []),
            *(k for k in node.get("properties", {}) if k not in node.get("required", [])),
        ]
        what = "mapping {" + ", ".join(keys) + "}"
    else:
        what = allowed(node)
    return f"{what} ({node['description']})" if "description" in node else what


def inlined(node, defs: dict):
    """The schema with every local ``$ref`` (``#/$defs/<name>``) replaced by what it names."""
    if isinstance(node, dict):
        if "$ref" in node:
            return inlined(defs[node["$ref"].removeprefix("#/$defs/")], defs)
        return {key: inlined(value, defs) for key, value in node.items() if key != "$defs"}
    if isinstance(node, list):
        return [inlined(value, defs) for value in node]
    return node


def _array(node: dict) -> str:
    traits = []
    if node.get("minItems"):
        traits.append("non-empty" if node["minItems"] == 1 else f"at least {node['minItems']} items")
    if node.get("uniqueItems"):
        traits.append("distinct")
    head = "list" + (f" ({', '.join(traits)})" if traits else "")
    items = node.get("items")
    return f"{head} of {allowed(items)}" if items else head


def _object(node: dict) -> str:
    traits = []
    if node.get("minProperties"):
        traits.append("non-empty")
    pattern = node.get("propertyNames", {}).get("pattern")
    if pattern:
        traits.append(f"names match `{pattern}`")
    head = "mapping" + (f" ({', '.join(traits)})" if traits else "")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        value = "a mapping of the keys below" if "properties" in extra else allowed(extra)
        return f"{head}: name → {value}"
    if "properties" in node:
        return f"{head} of the keys below"
    return head


def _cell(text: str) -> str:
    """One Markdown table cell: one line, no unescaped pipe."""
    return " ".join(str(text).split()).replace("|", "\\|")


def properties(schema: dict, prefix: str = "") -> list[tuple[str, dict, bool]]:
    """Every key of ``schema`` and below, depth first: (dotted path, its schema, required by its parent)."""
    rows = []
    required = set(schema.get("required", []))
    for name, node in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        rows.append((path, node, name in required))
        rows += properties(node, f"{path}.")
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and "properties" in extra:
            rows += properties(extra, f"{path}.<name>.")
    return rows


def _default(node: dict, required: bool) -> str:
    if "default" in node:
        return _code(node["default"])
    return "*required*" if required else ""


def render(schema: dict) -> str:
    """The config reference as Markdown: one section per top-level key, one table row per key path."""
    schema = inlined(schema, schema.get("$defs", {}))
    parts = [INTRO]
    required = set(schema.get("required", []))
    for name, node in schema["properties"].items():
        parts.append(f"\n## `{name}`\n\n")
        rows = properties(node, f"{name}.")
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and "properties" in extra:
            rows += properties(extra, f"{name}.<name>.")
        if "properties" in node:
            # a section: its description leads, its keys are the rows
            default = _default(node, name in required)
            default = "Default: " + default if default.startswith("`") else default.strip("*").capitalize()
            lead = " ".join(str(node.get("description", "")).split())
            parts.append(f"{lead[:1].upper()}{lead[1:]}. {default}.\n")
        else:
            rows.insert(0, (name, node, name in required))
        parts.append("\n| key | allowed | default | description |\n|---|---|---|---|\n")
        for path, sub, req in rows:
            description = _cell(sub.get("description", ""))
            parts.append(f"| `{path}` | {_cell(allowed(sub))} | {_default(sub, req)} | {description} |\n")
    return "".join(parts)


def missing_descriptions(schema: dict) -> list[str]:
    """Key paths whose schema has no non-empty ``description:``."""
    rows = properties(schema)
    return [path for path, node, _ in rows if not str(node.get("description", "")).strip()]
