"""Shared fixtures: SSH test fleets on loopback.

- ``sim_fleet``: a started `pltui.demo.nodesim.SimFleet` of 5 in-process asyncssh nodes
  (sim001..sim005, all "ok") with its fleet file written (``.fleet_path``). Function-scoped, async.
- ``make_sim_fleet``: factory ``await make_sim_fleet(n=5, *, modes=None, fleet=None, **start_kwargs)``
  -> SimFleet; `modes` maps node names to faults, `fleet` holds `write_fleet` keyword arguments.
  Every fleet made is stopped at teardown.
- ``sshd_fleet``: a started `rigs.sshd_fleet.SshdFleet` of 4 real-sshd nodes (sshd001..sshd004,
  one sshd) with its fleet file written. Module-scoped and shared: a test that plants faults on it
  must undo them (``up``, ``restore_host_key``), or use ``make_sshd_fleet``.
- ``make_sshd_fleet``: factory ``make_sshd_fleet(n=4, *, fleet=None, **start_kwargs)`` -> SshdFleet
  (function-scoped; e.g. ``solo=["sshd002"]`` to give fault nodes their own sshd).

Both fleet kinds offer: ``.nodes`` (name -> node with .name .host .port .root), ``.names``,
``.user``, ``.fleet_path``, ``.client_key``/``.client_key_path``, ``.known_hosts`` (parsed) /
``.known_hosts_path``, ``.connect_options(name, **overrides)`` for ``asyncssh.connect``.
The sshd fixtures skip only when no sshd binary exists (scripts/test.sh installs it); tests using
them get the ``sshd`` marker automatically.
"""

from __future__ import annotations

import itertools

import pytest

from pltui.demo.nodesim import SimFleet
from pltui.limits import raise_nofile_limit
from rigs.sshd_fleet import SshdFleet, find_sshd

SSHD_MISSING = "OpenSSH sshd is not installed (scripts/test.sh installs openssh-server)"
_SSHD_FIXTURES = {"sshd_fleet", "make_sshd_fleet"}


def pytest_configure(config):
    # The test session is an entry point: raise the open-file limit once, as pltui.cli.main does
    # (the engine only reads it; in-process fleets of 1,000 nodes need one fd per connection).
    raise_nofile_limit()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _SSHD_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.sshd)


@pytest.fixture
async def make_sim_fleet(tmp_path_factory):
    fleets: list[SimFleet] = []
    counter = itertools.count()

    async def make(n: int = 5, *, modes=None, fleet=None, **start_kwargs) -> SimFleet:
        base = tmp_path_factory.mktemp(f"sim{next(counter)}")
        sim = await SimFleet.start(n, base, modes=modes, **start_kwargs)
        fleets.append(sim)
        sim.write_fleet(base / "fleet.toml", **(fleet or {}))
        return sim

    try:
        yield make
    finally:
        for sim in fleets:
            await sim.stop()


@pytest.fixture
async def sim_fleet(make_sim_fleet) -> SimFleet:
    return await make_sim_fleet(5)


def _need_sshd() -> None:
    if find_sshd() is None:
        pytest.skip(SSHD_MISSING)


@pytest.fixture(scope="module")
def sshd_fleet(tmp_path_factory):
    _need_sshd()
    base = tmp_path_factory.mktemp("sshd")
    fleet = SshdFleet.start(4, base)
    try:
        fleet.write_fleet(base / "fleet.toml")
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture
def make_sshd_fleet(tmp_path_factory):
    _need_sshd()
    fleets: list[SshdFleet] = []

    def make(n: int = 4, *, fleet=None, **start_kwargs) -> SshdFleet:
        base = tmp_path_factory.mktemp("sshd")
        sshd = SshdFleet.start(n, base, **start_kwargs)
        fleets.append(sshd)
        sshd.write_fleet(base / "fleet.toml", **(fleet or {}))
        return sshd

    try:
        yield make
    finally:
        for sshd in fleets:
            sshd.stop()
