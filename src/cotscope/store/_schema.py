"""The DuckDB schema of a cotscope store."""

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS traces (
    id VARCHAR PRIMARY KEY,
    prompt JSON,
    reasoning VARCHAR,
    answer VARCHAR,
    reasoning_closed BOOLEAN,
    steps JSON,
    actions JSON,
    model VARCHAR,
    strategy VARCHAR,
    group_id VARCHAR,
    sample_index INTEGER,
    source_file VARCHAR,
    source_line BIGINT,
    source_format VARCHAR,
    metadata JSON,
    run_id VARCHAR,
    created_at TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS runs (
    id VARCHAR PRIMARY KEY,
    kind VARCHAR,
    name VARCHAR,
    config JSON,
    config_hash VARCHAR,
    status VARCHAR,
    stats JSON,
    started_at TIMESTAMP DEFAULT current_timestamp,
    finished_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS results (
    trace_id VARCHAR,
    evaluator VARCHAR,
    config_hash VARCHAR,
    part VARCHAR,
    kind VARCHAR,
    label BOOLEAN,
    score DOUBLE,
    parse_error VARCHAR,
    raw VARCHAR,
    reason VARCHAR,
    evidence JSON,
    details JSON,
    run_id VARCHAR,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (trace_id, evaluator, config_hash, part)
);
"""
