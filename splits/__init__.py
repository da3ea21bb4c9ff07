"""Datasets and distribution-shift splits for the benchmark (CausalDPO, Appendix B.1).

`load_dataset("ml-100k")` gives a filtered `Dataset`; `build_split(dataset, "temporal", seed=0)` gives a `Split`
with parts train / valid / iid_test / ood_test and a fingerprint. Importing this package registers the loaders
(`splits.movielens`; `splits.ml10m`, `splits.yelp`, `splits.bookcrossing`, read from a cache made by
`python -m bench data prepare`, see `splits.prepared`), the fallback to users' own prepared datasets
(`splits.custom`) and the shifts (`splits.shifts`).
"""
from . import movielens  # noqa: F401  (registers "ml-100k")
from . import bookcrossing, ml10m, yelp  # noqa: F401  (register "book-crossing", "ml-10m", "yelp2018")
from . import custom  # noqa: F401  (users' own datasets, found in the data dir by name)
from .datasets import DATASETS, load_dataset
from .registry import UnknownNameError
from .shifts import SHIFTS, build_split
from .types import PARTS, Dataset, Split

__all__ = ["Dataset", "Split", "PARTS", "load_dataset", "build_split", "DATASETS", "SHIFTS", "UnknownNameError"]
