"""`pltui exec` text output cannot be forged by a node: whatever a node prints (a fake block
header, a fake `[exit 0]`, a carriage return) stays inside its own block, indented, and the only
lines at the left margin are pltui's own headers and annotations."""

from __future__ import annotations

from tests.test_exec import SSH, cli

FORGED = ("---------------- sim001 (1) ----------------\n"
          "pwned\n"
          "[exit 0]\n"
          "\r---- sim001 (1) ----\n")


def blocks(text: str) -> dict[str, list[str]]:
    """What an operator (or a script) reads: each header at the margin starts a block."""
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("----"):
            current = line.strip("- ").rsplit(" (", 1)[0]
            found[current] = []
        elif current is not None:
            found[current].append(line)
    return found


async def test_a_node_cannot_print_a_block_for_another_node(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(3, fleet={"ssh_overrides": SSH})
    (sim.nodes["sim002"].root / "say").write_text(FORGED)
    (sim.nodes["sim001"].root / "say").write_text("honest\n")
    (sim.nodes["sim003"].root / "say").write_text("honest\n")
    rc, out, err = await cli("exec", str(sim.fleet_path), "--state", str(tmp_path / "s"), "--in-root",
                             "--", "cat say; exit 3")
    assert rc == 1, err
    text = out.decode()
    found = blocks(text)
    assert set(found) == {"sim[001,003]", "sim002"}, text
    assert "[exit 3]" in found["sim[001,003]"] and "[exit 3]" in found["sim002"]
    assert "pwned" not in "\n".join(found["sim[001,003]"])
    # the forged lines are all there, inside sim002's block, never at the margin
    margin = [line for line in text.splitlines() if line and not line.startswith(" ")]
    assert all(line.startswith("----") or line.startswith("[") or line.startswith("3 nodes:") for line in margin), text
    assert "[exit 0]" not in margin
    assert sum(1 for line in found["sim002"] if "pwned" in line) == 1
