"""Publication figures and Table 1 from the tidy metric table (``results/metrics.parquet``).

Every function is pure: a metric DataFrame and a figure spec (the config's
``figures:`` mapping, a :class:`FigureSpec`, or None for defaults) in, files out.

>>> from clipdyn.figures import figure1, table1, write_table1
>>> fig = figure1(metrics, {"base_model": "ViT-B-32"}, "fig1.pdf", "fig1.png")  # doctest: +SKIP
>>> write_table1(table1(metrics), "table1.csv", "table1.md", "table1.tex")        # doctest: +SKIP
"""

from .robustness import robustness_figures
from .spec import DEFAULT_HUMAN_TEXTURE_BIAS, MEASURES, FigureSpec, Measure, Series, measure_info, reference_curve
from .table import TABLE1_COLUMNS, table1, write_table1
from .timecourse import figure1, figure2, figure3

__all__ = ["figure1", "figure2", "figure3", "table1", "write_table1", "robustness_figures", "FigureSpec",
           "Measure", "measure_info", "Series", "MEASURES", "DEFAULT_HUMAN_TEXTURE_BIAS", "TABLE1_COLUMNS",
           "reference_curve"]
