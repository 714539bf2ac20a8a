"""Test rigs: real OpenSSH sshd fleets on loopback, bastions in front of them, node login shells.

They run as root (useradd, mount namespaces, sshd processes), so they live with the tests and
never ship in the pltui package: nothing under pltui/ imports them (tests/test_layering.py checks).
Tests import them as `rigs.*` (tests/ is on sys.path through the root conftest); bench scripts
insert the repository's tests/ directory on sys.path first. The in-process asyncssh nodes the demo
also uses are `pltui.demo.nodesim`.
"""
