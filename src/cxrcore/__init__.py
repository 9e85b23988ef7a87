"""cxrcore: the contract `reportminer` and `classifier` share, and nothing else.

Errors a user can act on, the output policy (atomic writes, provenance metadata), the reader of
labels.parquet with its finding columns and validated splits, the boxes table, and the layout of a
training run. It needs neither spaCy nor torch, so either package can be installed without the other's
dependencies.
"""

__version__ = "0.2.0"  # of the whole distribution (pyproject.toml)
