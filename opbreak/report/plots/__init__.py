"""The report's figures: seaborn/matplotlib on the Agg backend, one module per report section.

- :mod:`.common`: the conventions every figure shares (file writing, "no data" panels, label
  shortening, colours, pie thresholds);
- :mod:`.ops`: per-config operator pies, and the op x config grids the heatmaps draw;
- :mod:`.pairs`: a declared pair's per-op times and speedups (Comparisons);
- :mod:`.totals`: decode step latency and phase totals (Decode and phase totals);
- :mod:`.stability`: CV heatmap and repeat spread (Stability);
- :mod:`.roofline`: roofline and efficiency (Theory);
- :mod:`.allreduce`: the ring model against the sweep and the in-phase calls (Theory);
- :mod:`.decode`: phase split and per-rank ops (Decode truth);
- :mod:`.host`: the decode probe's host split;
- :mod:`.predict`: predicted shares and totals, always hatched (Predictions).

Every function takes tidy tables (the aggregate/theory CSVs), writes one PNG and returns
nothing; numbers drawn on a figure are table values, never computed totals. Functions never
raise on empty input: they draw a "no data" panel so the report always renders. Only
:func:`opbreak.report.figures.make_figures` calls them.
"""

import matplotlib

# Before any submodule imports pyplot: the figures render without a display.
matplotlib.use("Agg")
