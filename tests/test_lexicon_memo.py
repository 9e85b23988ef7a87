"""The loaded lexicon kept in the cache folder: used when every lexicon file is as it was, never after an edit,
never when someone else could have written it."""

import dataclasses
import os
import pickle
import shutil

import pytest

from reportminer import lexicon_memo
from reportminer.lexicon import default_folder, load_lexicon


@pytest.fixture()
def folder(tmp_path):
    copy = tmp_path / "lexicon"
    shutil.copytree(default_folder(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def entries(cache):
    return sorted((cache / lexicon_memo.FOLDER).glob("*.pickle"))


def plant(cache, entry, lexicon, mode=0o600):
    """Replace the stored lexicon by one whose first finding has no synonyms (a visible difference)."""
    first = dataclasses.replace(lexicon.findings[0], synonyms=())
    entry.write_bytes(pickle.dumps(dataclasses.replace(lexicon, findings=(first, *lexicon.findings[1:]))))
    os.chmod(entry, mode)


def test_the_stored_lexicon_is_used_until_a_file_changes(tmp_path, folder):
    cache = tmp_path / "cache"
    fresh = lexicon_memo.load(folder, "chestxray14", None, {}, cache)
    assert fresh == load_lexicon(folder, "chestxray14")
    [entry] = entries(cache)
    plant(cache, entry, fresh)
    served = lexicon_memo.load(folder, "chestxray14", None, {}, cache)
    assert served.findings[0].synonyms == () and fresh.findings[0].synonyms  # the entry is what a run uses

    rule_file = sorted((folder / "rules").glob("*.yaml"))[0]
    rule_file.write_text(rule_file.read_text() + "\n# a comment is an edit too\n")
    edited = lexicon_memo.load(folder, "chestxray14", None, {}, cache)
    assert edited.findings[0].synonyms and edited.digest != fresh.digest
    assert len(entries(cache)) == 2
    other = lexicon_memo.load(folder, "chestxray14", "clinical", {}, cache)
    assert other.conventions != edited.conventions and len(entries(cache)) == 3


def test_an_entry_others_may_write_or_a_damaged_one_is_not_used(tmp_path, folder):
    cache = tmp_path / "cache"
    fresh = lexicon_memo.load(folder, "chestxray14", None, {}, cache)
    [entry] = entries(cache)
    plant(cache, entry, fresh, mode=0o666)
    assert lexicon_memo.load(folder, "chestxray14", None, {}, cache) == fresh
    entry.write_bytes(b"not a pickle")
    assert lexicon_memo.load(folder, "chestxray14", None, {}, cache) == fresh
    assert lexicon_memo.load(folder, "chestxray14", None, {}, cache) == fresh  # rewritten whole


def test_a_folder_with_a_special_file_is_loaded_afresh_every_time(tmp_path, folder):
    os.mkfifo(folder / "notes.fifo")
    cache = tmp_path / "cache"
    assert lexicon_memo.load(folder, "chestxray14", None, {}, cache) == load_lexicon(folder, "chestxray14")
    assert entries(cache) == []


def test_a_linked_rules_folder_is_loaded_afresh_every_time(tmp_path, folder):
    """Its files could change without the folder's own files changing: the entry could not vouch for them."""
    elsewhere = tmp_path / "rules-elsewhere"
    (folder / "rules").rename(elsewhere)
    (folder / "rules").symlink_to(elsewhere, target_is_directory=True)
    cache = tmp_path / "cache"
    first = lexicon_memo.load(folder, "chestxray14", None, {}, cache)
    rule_file = sorted(elsewhere.glob("*.yaml"))[0]
    rule_file.write_text(rule_file.read_text() + "\n# edited where the link points\n")
    assert lexicon_memo.load(folder, "chestxray14", None, {}, cache).digest != first.digest
    assert entries(cache) == []
