"""How every number meant for a person is written: findings.md, the paper tables, the report, train_summary.md.

One style everywhere, so that the same quantity reads the same in the text and in the tables:

- three significant figures, trailing zeros kept (0.500, 0.277, 12.0);
- scientific notation when the rounded value is below 1e-3 or at least 1e3 in absolute value, written
  8.60×10⁻⁵ (a reader's notation, not Python's 8.60e-05); so 12345.6 reads 1.23×10⁴, never 12300, which would
  claim digits that were rounded away;
- integers (Python or NumPy integers, and floats with an integral value below 1e3, such as a mean offset of
  -1.0) as integers: 3, −1, 12345;
- a real minus sign (U+2212), NaN as an en dash, infinities as ∞ and −∞;
- a summary over seeds as ``mean [95% CI low, high] (n=N)``, or ``all seeds: v (n=N)`` when every seed gave the
  same value (a zero-width interval says nothing), or ``v (n=1, no CI)``.

The text is Unicode; ``paper.latex_escape`` turns its minus signs, powers of ten and infinities into LaTeX math.
Machine-readable tables (the CSVs) never go through here: they keep full precision.
"""

from __future__ import annotations

import math
import numbers
import re

MINUS = "\N{MINUS SIGN}"
MISSING = "\N{EN DASH}"
TIMES = "\N{MULTIPLICATION SIGN}"
INFINITY = "\N{INFINITY}"
SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
SIGNIFICANT = 3
# plain notation covers [1e-3, 1e3) after rounding; outside it, scientific
SMALL, LARGE = 1e-3, 1e3
# a spread over seeds this small relative to the mean is float rounding of equal values, not variation
CONSTANT_RTOL = 1e-12
# how a cell that number() or estimate() wrote begins (tables right-align such columns)
NUMBER_CELL = re.compile(rf"^(all seeds: )?([{MINUS}-]?(\d|{INFINITY})|{MISSING}|n/a)")


def number(value) -> str:
    """One value as a person reads it (see the module docstring); anything that is not a number as ``str``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value)).replace("-", MINUS)
    x = float(value)
    if math.isnan(x):
        return MISSING
    if math.isinf(x):
        return INFINITY if x > 0 else MINUS + INFINITY
    if x.is_integer() and abs(x) < LARGE:
        return str(int(x)).replace("-", MINUS)
    # the plain-or-scientific choice is made on the rounded value, so 0.0009996 reads 0.00100, not 1.00×10⁻³
    mantissa, exponent = f"{x:.{SIGNIFICANT - 1}e}".split("e")
    rounded = float(f"{mantissa}e{exponent}")
    if SMALL <= abs(rounded) < LARGE:
        text = f"{rounded:#.{SIGNIFICANT}g}".rstrip(".")
    else:
        text = f"{mantissa}{TIMES}10{str(int(exponent)).translate(SUPERSCRIPT)}"
    return text.replace("-", MINUS)


def is_constant(row: dict) -> bool:
    """Whether a summary over two or more seeds has a zero-width interval: every seed gave the same value."""
    low, high, mean = row["ci95_low"], row["ci95_high"], row["mean"]
    if not (math.isfinite(low) and math.isfinite(high)):
        return False
    return abs(high - low) <= CONSTANT_RTOL * abs(mean)


def estimate(row: dict, ci_label: str = "95% CI ") -> str:
    """A summary over seeds (``mean, n, ci95_low, ci95_high``): ``mean [95% CI low, high] (n=N)``.

    ``all seeds: v (n=N)`` when the seeds agree, ``v (n=1, no CI)`` with one seed, ``n/a (n=0)`` with none.
    ``ci_label`` goes before the interval; a table whose header names the interval passes "".
    """
    n = row["n"]
    if not (isinstance(n, numbers.Real) and math.isfinite(n)) or n < 1:
        return "n/a (n=0)"
    n = int(n)
    if is_constant(row):
        return f"all seeds: {number(row['mean'])} (n={n})"
    if not math.isfinite(row["ci95_low"]):
        return f"{number(row['mean'])} (n={n}, no CI)"
    return f"{number(row['mean'])} [{ci_label}{number(row['ci95_low'])}, {number(row['ci95_high'])}] (n={n})"


def is_number_cell(value) -> bool:
    """Whether a table cell holds a number (or a summary of one), which tables align to the right."""
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Real):
        return True
    return isinstance(value, str) and NUMBER_CELL.match(value) is not None
