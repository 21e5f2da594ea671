r"""The data layer: the :class:`~torch_geometric.data.HeteroData` contract, loaders for MMRec,
RecBole and CSV/TSV data (their shared :class:`InteractionOptions`), the synthetic default, splits,
validation (:class:`DataError` for what is refused, :class:`DataWarning` for notices), text and
image features (:mod:`~stair_pyg.data.features`, :mod:`~stair_pyg.data.images`), product
catalogues (:mod:`~stair_pyg.data.amazon`: the Amazon review data and product tables),
``prepare`` and ``describe``."""
from stair_pyg.data.csv import load_csv
from stair_pyg.data.errors import DataError, DataWarning
from stair_pyg.data.hetero import (EDGE, FEATURE_SUFFIX, REV_EDGE, RecDataset, Splits,
                                   build_hetero_data, modality_features, num_users_items,
                                   train_edge_index)
from stair_pyg.data.mmrec import load_mmrec
from stair_pyg.data.options import InteractionOptions
from stair_pyg.data.prepare import prepare_dataset
from stair_pyg.data.recbole import load_recbole
from stair_pyg.data.registry import FORMATS, load_dataset
from stair_pyg.data.splits import (deduplicate, k_core, leave_one_out_split, random_split,
                                   rank_ids)
from stair_pyg.data.summary import describe, format_summary
from stair_pyg.data.synthetic import make_synthetic
from stair_pyg.data.validate import cold_start

__all__ = [
    "EDGE", "REV_EDGE", "FEATURE_SUFFIX", "Splits", "RecDataset", "build_hetero_data",
    "modality_features", "train_edge_index", "num_users_items",
    "DataError", "DataWarning", "InteractionOptions", "load_mmrec", "load_recbole", "load_csv",
    "make_synthetic", "load_dataset",
    "FORMATS", "random_split", "leave_one_out_split", "k_core", "deduplicate", "rank_ids",
    "cold_start", "describe", "format_summary", "prepare_dataset",
]
