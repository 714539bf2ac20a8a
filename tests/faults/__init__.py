"""Fault injection: real faults injected into real SSH nodes (in-process asyncssh nodes running
real shell commands, and real OpenSSH sshd nodes on loopback), and the guarantees the console
keeps under them.

- test_network.py         refused, silent, banner-then-silence, drops mid-sweep / mid-command /
                          mid-upload, a node down and back, hanging and endless commands, slow
                          nodes, 1,000 nodes at fanout 64 (file descriptors)
- test_hostile.py         hostile probe output through real SSH, hostile file names in globs,
                          terminal safety of every CLI command, quoting of every fleet string,
                          host keys that change
- test_local.py           the state database locked, corrupt, on a full disk; a console killed
                          during a rollout
- test_operator_input.py  nonsense flags, node sets and bundles on the command line
- test_concurrency.py     two operators on one fleet: node locks naming their holder
- test_properties.py      hypothesis: fleet loader, node-set layer, probe parser

Pre-existing tests that already prove some faults are named in each module's docstring.
"""
