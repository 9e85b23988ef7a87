"""reportminer: label chest X-ray reports with rules you can read, edit and audit."""

from cxrcore import __version__  # noqa: F401  (one version for the distribution)
