-- A state database as written by pltui before PRAGMA user_version migrations (schema v0),
-- made by that code's Store; tests/test_store.py opens it with today's Store.
BEGIN TRANSACTION;
CREATE TABLE actions (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, started REAL NOT NULL, updated REAL NOT NULL,
    status TEXT NOT NULL, owner TEXT NOT NULL, state TEXT NOT NULL
);
INSERT INTO "actions" VALUES('rollout-1','rollout',1.79670141014143157007e+09,1.79670141014143157007e+09,'done','root@vm','{"x": 1}');
CREATE TABLE audit (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, user TEXT NOT NULL, host TEXT NOT NULL,
    pid INTEGER NOT NULL, action TEXT NOT NULL, nodes TEXT NOT NULL, args TEXT NOT NULL,
    result TEXT
);
INSERT INTO "audit" VALUES(1,1.79670141014132380479e+09,'root','vm',25357,'rollout','["n1"]','{"bundle": "b"}','ok');
CREATE TABLE events (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, level TEXT NOT NULL, node TEXT, kind TEXT NOT NULL,
    message TEXT NOT NULL
);
INSERT INTO "events" VALUES(1,1.79670141014124846458e+09,'warning','n1','heal','old event');
CREATE TABLE node_locks (
    node TEXT PRIMARY KEY, action_id TEXT NOT NULL, holder TEXT NOT NULL, pid INTEGER NOT NULL,
    host TEXT NOT NULL, since REAL NOT NULL
);
CREATE TABLE node_state (
    node TEXT PRIMARY KEY, updated REAL NOT NULL, sweep_id INTEGER, status TEXT NOT NULL
);
INSERT INTO "node_state" VALUES('n1',1.79670141014102983478e+09,2,'{"node": "n1", "ssh": "ok", "error": null, "observed": 1700000000.0, "latency_ms": null, "monitor": "alive", "monitor_pid": null, "heartbeat_age": null, "processes": [{"name": "web", "alive": true, "pid": null, "state": "unknown", "restarts": null, "last_exit": null, "next_try": null}], "version": "2.0", "protocol": null, "load": null, "uptime": null, "disk_free": null, "log_bytes": null, "clock": null, "digest_tool": null, "digests": null, "digests_time": null, "health": "up"}');
INSERT INTO "node_state" VALUES('n2',1.79670141014102983478e+09,2,'{"node": "n2", "ssh": "refused", "error": null, "observed": 1700000000.0, "latency_ms": null, "monitor": "alive", "monitor_pid": null, "heartbeat_age": null, "processes": [{"name": "web", "alive": true, "pid": null, "state": "unknown", "restarts": null, "last_exit": null, "next_try": null}], "version": "1.0", "protocol": null, "load": null, "uptime": null, "disk_free": null, "log_bytes": null, "clock": null, "digest_tool": null, "digests": null, "digests_time": null, "health": "down"}');
CREATE TABLE observations (
    id INTEGER PRIMARY KEY, node TEXT NOT NULL, time REAL NOT NULL, sweep_id INTEGER,
    fields TEXT NOT NULL
);
INSERT INTO "observations" VALUES(1,'n1',1.79670141014060950283e+09,1,'{"ssh": "ok", "health": "up", "error": null, "monitor": "alive", "procs": "1/1", "version": "1.0", "protocol": null}');
INSERT INTO "observations" VALUES(2,'n2',1.79670141014060950283e+09,1,'{"ssh": "ok", "health": "up", "error": null, "monitor": "alive", "procs": "1/1", "version": "1.0", "protocol": null}');
INSERT INTO "observations" VALUES(3,'n1',1.79670141014102983478e+09,2,'{"version": "2.0", "checksums": "ok"}');
INSERT INTO "observations" VALUES(4,'n2',1.79670141014102983478e+09,2,'{"ssh": "refused", "health": "down", "checksums": "unknown"}');
CREATE TABLE sweeps (
    id INTEGER PRIMARY KEY, started REAL NOT NULL, finished REAL, checksums INTEGER NOT NULL,
    nodes INTEGER NOT NULL, summary TEXT, owner TEXT
);
INSERT INTO "sweeps" VALUES(1,1.79670141014035177227e+09,1.79670141014091086385e+09,0,2,'{"nodes": 2}','root@vm');
INSERT INTO "sweeps" VALUES(2,1.79670141014095735556e+09,1.79670141014121961592e+09,1,2,'{"nodes": 2}','root@vm');
CREATE INDEX node_state_updated ON node_state(updated);
CREATE INDEX observations_node ON observations(node, time);
CREATE INDEX events_node ON events(node, time);
COMMIT;
