"""classifier: the weakly supervised CNN (ChestX-ray8) trained from reportminer's labels.

`classifier synth | fit | score | localize`; see README.md.
"""

__version__ = "0.1.0"
