"""Data: built-in hierarchies and loaders for WordNet, ETHEC and HMC benchmarks."""

from .builtin import cifar10_hierarchy, fashion_mnist_hierarchy, toy_tree
from .ethec import ETHECData, ETHECSplit, load_ethec
from .hmc import HMC_DATASETS, ArffData, ArffFormatError, HMCDataset, hmc_files, load_hmc, load_hmc_files, read_arff
from .paths import DataNotFoundError, cache_dir, data_root, require_files
from .registry import SpecData, load_spec
from .wordnet import WordNetData, load_mammal_closure_tsv, load_wordnet

__all__ = [
    "HMC_DATASETS",
    "ArffData",
    "ArffFormatError",
    "HMCDataset",
    "hmc_files",
    "load_hmc",
    "load_hmc_files",
    "read_arff",
    "DataNotFoundError",
    "ETHECData",
    "ETHECSplit",
    "SpecData",
    "WordNetData",
    "cache_dir",
    "cifar10_hierarchy",
    "data_root",
    "fashion_mnist_hierarchy",
    "load_ethec",
    "load_mammal_closure_tsv",
    "load_spec",
    "load_wordnet",
    "require_files",
    "toy_tree",
]
