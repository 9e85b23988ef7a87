"""classifier: the weakly supervised CNN (ChestX-ray8) trained from reportminer's labels.

`classifier synth | fit | score | localize`; see README.md.
"""

from cxrcore import __version__  # noqa: F401  (one version for the distribution)
