"""Published tables stored as data, and the runner that reproduces them.

One JSON file per table in this package: the protocol, the exact configuration
of every cell and the paper's number beside it (see :mod:`.tables` for the
format). ``conehier list`` shows them; ``conehier reproduce NAME`` runs them
(:func:`reproduce`) and writes ``results.json`` + ``results.md``.

>>> from conehier.experiments import list_tables, load_table, reproduce
>>> [t.name for t in list_tables()]
['ethec-link-prediction', 'ethec-reconstruction', 'hyperbolic-cones-wordnet']
"""

from .runner import default_out, load_results, machine_info, plan, reproduce
from .tables import Cell, Metric, Table, list_tables, load_table, table_files, table_names

__all__ = [
    "Cell",
    "Metric",
    "Table",
    "default_out",
    "list_tables",
    "load_results",
    "load_table",
    "machine_info",
    "plan",
    "reproduce",
    "table_files",
    "table_names",
]
