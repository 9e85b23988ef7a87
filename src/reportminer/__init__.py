"""reportminer: label chest X-ray reports with rules you can read, edit and audit."""

__version__ = "0.1.0"
