"""Hierarchies: the label DAG, its file formats, and edge splits."""

from .errors import CycleError, HierarchyError, UnknownLabelError
from .graph import Hierarchy
from .io import read_edge_list, write_edge_list

__all__ = [
    "CycleError",
    "Hierarchy",
    "HierarchyError",
    "UnknownLabelError",
    "read_edge_list",
    "write_edge_list",
]
