"""classifier: the weakly supervised CNN (ChestX-ray8) trained from reportminer's labels.

Its commands (`fit`, `score`, `localize`) are being built; see the README's roadmap.
"""

__version__ = "0.1.0"
