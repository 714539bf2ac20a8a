"""`:group save` edits the operator's fleet file in place: comments, order and layout survive."""

from __future__ import annotations

import shutil
from pathlib import Path

from pltui.fleet import load, save_group

SAMPLE = Path(__file__).resolve().parent.parent / "sample_fleet.toml"


def comment_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if "#" in line]


def test_save_group_keeps_every_comment_and_the_layout(tmp_path):
    path = tmp_path / "fleet.toml"
    shutil.copy(SAMPLE, path)
    original = path.read_text()
    assert len(comment_lines(original)) > 10
    save_group(path, "lab", "planetlab[3-4].cs.example.edu")
    save_group(path, "edu", "planetlab[1-6].cs.example.edu")  # replacing a group keeps its comment line too
    text = path.read_text()
    for line in comment_lines(original):
        assert line in text or line.startswith("edu ="), f"comment lost: {line!r}"
    # only the groups table changed: every other line is where it was, in order
    old_lines, new_lines = original.splitlines(), text.splitlines()
    assert [l for l in new_lines if not l.startswith(("lab =", "edu ="))] == \
           [l for l in old_lines if not l.startswith("edu =")]
    # a new group goes right after the last group, not after the next table's comment
    assert new_lines[new_lines.index('lab = "planetlab[3-4].cs.example.edu"') - 1].startswith("production =")
    fleet = load(path)
    assert fleet.members("lab") == ("planetlab3.cs.example.edu", "planetlab4.cs.example.edu")
    assert len(fleet.members("edu")) == 6
    assert fleet.members("production") == load(SAMPLE).members("production")


def test_save_group_into_a_file_without_groups_table(tmp_path):
    path = tmp_path / "fleet.toml"
    path.write_text('# my fleet\n[fleet]\nname = "f"   # short\nnodes = ["a", "b"]\n')
    save_group(path, "one", "a")
    text = path.read_text()
    assert text.startswith('# my fleet\n[fleet]\nname = "f"   # short\n')
    assert load(path).members("one") == ("a",)
