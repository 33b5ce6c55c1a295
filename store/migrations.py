"""Numbered schema migrations. Append only: never edit a migration that has shipped."""
from __future__ import annotations

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "initial schema", """
CREATE TABLE images (
    id          TEXT PRIMARY KEY,          -- sha256 of the image bytes, or the id given on import
    path        TEXT,                      -- source path; NULL when the user asked for --no-paths
    collection  TEXT,
    size        BIGINT,                    -- bytes
    width       INTEGER,
    height      INTEGER,
    created_at  TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE descriptions (
    image_id          TEXT NOT NULL,
    model             TEXT NOT NULL,
    prompt_version    TEXT NOT NULL,
    renderer_version  TEXT,
    json              TEXT,               -- structured description (SceneDescription JSON) if any
    text              TEXT NOT NULL,      -- what is indexed
    text_hash         TEXT NOT NULL,      -- sha256 of text: embedding cache key and staleness input
    caption           TEXT,
    meta              TEXT,               -- free JSON object
    created_at        TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (image_id, model, prompt_version)
);
CREATE TABLE captions (
    image_id  TEXT NOT NULL,
    text      TEXT NOT NULL,
    source    TEXT NOT NULL DEFAULT 'import',
    PRIMARY KEY (image_id, text)
);
CREATE SEQUENCE job_ids START 1;
CREATE TABLE jobs (
    id          BIGINT PRIMARY KEY DEFAULT nextval('job_ids'),
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,           -- running | done | failed | interrupted
    params      TEXT,                    -- JSON
    counts      TEXT,                    -- JSON
    started_at  TIMESTAMP DEFAULT current_timestamp,
    ended_at    TIMESTAMP
);
CREATE TABLE job_errors (
    job_id    BIGINT NOT NULL,
    image_id  TEXT,
    path      TEXT,
    reason    TEXT NOT NULL,
    detail    TEXT,
    created_at TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE embeddings (
    text_hash  TEXT NOT NULL,
    model      TEXT NOT NULL,
    dim        INTEGER NOT NULL,
    vector     BLOB NOT NULL,            -- float32 little-endian, as encoded (before any normalisation)
    PRIMARY KEY (text_hash, model)
);
"""),
]

# -- describe (issue 3) ------------------------------------------------------------------------------
MIGRATIONS.append((2, "describe: ingested parquet shards", """
CREATE TABLE ingested_shards (
    name         TEXT PRIMARY KEY,        -- shard file name (unique per worker and batch)
    sha256       TEXT NOT NULL,           -- of the shard file: a rewritten shard is ingested again
    rows         INTEGER NOT NULL,
    errors       INTEGER NOT NULL,
    ingested_at  TIMESTAMP DEFAULT current_timestamp
);
"""))

# -- live engine (issue 9) ----------------------------------------------------------------------------
# Every write that can change an image's document appends (seq, image id) to `changes`; an index records
# the highest seq it has applied, so an update is "apply the changes after N". The log holds ids only
# (no text), and compaction prunes what every index has applied. `store_meta.uid` tells indexes which
# store they follow.
MIGRATIONS.append((3, "live engine: change log and store identity", """
CREATE SEQUENCE change_seq START 1;
CREATE TABLE changes (
    seq       BIGINT PRIMARY KEY DEFAULT nextval('change_seq'),
    image_id  TEXT NOT NULL,
    changed_at TIMESTAMP DEFAULT current_timestamp
);
INSERT INTO changes (image_id) SELECT DISTINCT image_id FROM descriptions ORDER BY image_id;
CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO store_meta VALUES ('uid', CAST(uuid() AS TEXT)), ('changes_pruned_upto', '0');
"""))

# -- HTTP service (issue 10) ---------------------------------------------------------------------------
# API keys for `vfr serve`. Only a salted scrypt hash of each key's secret is kept; `id` is the key's public
# part (it appears in the key itself and in `vfr keys list`). `collections` is a JSON list of the
# collections the key may see (["*"]: all). A revoked key keeps its row (revoked_at) for the audit trail.
MIGRATIONS.append((4, "serve: api keys", """
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    salt         BLOB NOT NULL,
    hash         BLOB NOT NULL,
    kdf          TEXT NOT NULL,           -- JSON: {"name": "scrypt", "n", "r", "p"}
    collections  TEXT NOT NULL,           -- JSON list of collection names, or ["*"]
    role         TEXT NOT NULL,           -- read | write | admin
    name         TEXT,
    created_at   TIMESTAMP DEFAULT current_timestamp,
    revoked_at   TIMESTAMP
);
"""))
