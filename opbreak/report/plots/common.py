"""What every figure of the report shares: writing a PNG, the "no data" panel, short labels, colours.

One colour per operator in every figure (:data:`opbreak.ops.OP_COLORS`, keyed by
:data:`opbreak.ops.OPS`; :func:`op_color`); configs get their own palette
(:func:`config_colors`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from ...ops import OP_COLORS
from ...stats import CI_PCT

CI = f"{CI_PCT} CI"

OTHER_COLOR = "#f2f2f2"
UNKNOWN_COLOR = "#000000"
PHASE_MARKERS = {"prefill": "o", "decode": "^"}
DPI = 110
PIE_MIN_SHARE = 0.03  # slices below this are folded into "other" (listed in the legend)
PIE_LABEL_MIN = 0.06  # slices below this get no percentage label on the pie itself


def fmt_ms(v) -> str:
    """A time in ms as a figure shows it: thousands separated from 10 s up, 4 significant digits below."""
    return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"


def op_color(op: str) -> str:
    """The op's colour in every figure; black for a name the op registry does not know."""
    return OP_COLORS.get(op, UNKNOWN_COLOR)


def config_colors(configs) -> dict:
    """One colour per config, in the given order (colour-blind palette)."""
    pal = sns.color_palette("colorblind", max(3, len(configs)))
    return {c: pal[i % len(pal)] for i, c in enumerate(configs)}


def save(fig, path):
    """Write the figure (its folder created) and close it, so a long report does not hold every figure open."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def stacked_barh(ax, y, parts, **bar):
    """Horizontal bars stacked left to right at ``y``: ``parts`` = [(values, label, colour), ...]; a
    missing value (NaN) adds nothing."""
    left = np.zeros(len(y))
    for values, label, color in parts:
        v = np.nan_to_num(np.asarray(values, dtype=float))
        ax.barh(y, v, left=left, color=color, label=label, edgecolor="white", linewidth=0.5, **bar)
        left += v


def no_data(ax, what="no data"):
    """An empty panel that says why it is empty, instead of an exception or a blank axis."""
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="#666666", fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def short(text: str, n: int = 40) -> str:
    """A config name or label cut to ``n`` characters (with an ellipsis) so titles and ticks stay readable."""
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def wrap(text, width):
    """A ", "-separated list broken into lines of at most ``width`` characters, between items only."""
    out, line = [], ""
    for word in text.split(", "):
        if line and len(line) + len(word) + 2 > width:
            out.append(line + ",")
            line = word
        else:
            line = f"{line}, {word}" if line else word
    out.append(line)
    return "\n".join(out)
