"""The store's schema: every migration in order, and the SQL fragments that migrations and queries share.

A migration is numbered by its place in MIGRATIONS and recorded by number and name in each store's
schema_migrations table; a store whose recorded names differ is refused (engine._check_recorded). So
a new migration goes at the end of the list, and no migration is ever edited, moved or removed.
Migrations are written for the embedded file; engine.lake_sql leaves out what DuckLake lacks.
"""
from __future__ import annotations

# --- how predictions and labels count in the rollups -----------------------------------------

# Statistics read rollups instead of the log. A prediction counts in the row of its model, version,
# business line, day, predicted label and confidence bucket b (b/100 <= top_prob < (b+1)/100, as
# floats compare), so a low-confidence threshold of whole hundredths counts exactly. Every written
# batch appends its own rows, summed when read and merged by compact_rollups: DuckLake has no keys
# to upsert on, and appends from several writers never conflict where upserts of one row would.
_BUCKET = ("(CAST(floor(top_prob * 100) AS INTEGER) - CAST(top_prob < floor(top_prob * 100) / 100 AS INTEGER)"
           " + CAST(top_prob >= (floor(top_prob * 100) + 1) / 100 AS INTEGER))")
_PREDICTION_ROLLUP = f"""
    SELECT model_id, version, business_line, CAST(created_at AS DATE) AS day, label, {_BUCKET} AS bucket,
           count(*) AS n, sum(top_prob) AS sum_top_prob
    FROM {{source}} GROUP BY ALL"""
# Labels count in the row of the labelled prediction's keys; an undo appends the same row negated.
_LABEL_ROLLUP = """
    SELECT p.model_id, p.version, p.business_line, CAST(p.created_at AS DATE) AS day, f.label AS truth,
           p.label AS predicted, {sign} * count(*) AS n
    FROM {feedback} f JOIN predictions p USING (prediction_id) GROUP BY ALL"""

# An ordinal model's labels are its grades, lowest first, and probs are in that order, so a
# prediction's expected grade is sum_i i * probs[i] (positions from 1, as core.ordinal counts).
# The prediction rollups carry its sum, so the Monitor's mean expected grade per line x period
# reads them as confidence does. Computed for every model (one list sum per row); only an ordinal
# model's figure means anything. Rows written before this column existed are NULL: they are all
# classification models' (an ordinal model's rows are rebuilt from the log by the migration).
_EXPECTED_GRADE = "list_sum(list_transform(CAST({probs} AS DOUBLE[]), lambda q, i: q * i))"
_GRADED_ROLLUP = f"""
    SELECT model_id, version, business_line, CAST(created_at AS DATE) AS day, label, {_BUCKET} AS bucket,
           count(*) AS n, sum(top_prob) AS sum_top_prob, sum({_EXPECTED_GRADE.format(probs="probs")}) AS sum_expected_grade
    FROM {{source}} GROUP BY ALL"""
_ORDINAL_PREDICTIONS = "(SELECT * FROM predictions WHERE model_id IN (SELECT model_id FROM models WHERE task = 'ordinal'))"

# Each labelled prediction's slice fields (model, version, line, created_at, predicted label), copied
# from the log when it is first labelled: the audited accuracy counts the audit sample's labels per
# line x period from these few rows; joined to the log instead, it would read the log's ids, lines
# and times, most of a statistics call and growing with the log.
# Rows are facts about a prediction, which never changes: an undone label leaves its row (the
# statistics join the labels that stand), and a prediction labelled again is not copied twice.
_LABELLED_SELECT = """
    SELECT p.prediction_id, p.model_id, p.version, p.business_line, p.created_at, p.label
    FROM predictions p SEMI JOIN {labels} f USING (prediction_id)"""


# --- the migrations, oldest first: a new one goes at the end -------------------------------
MIGRATIONS = [
    ("create core tables", """
    CREATE SEQUENCE model_seq;
    CREATE SEQUENCE example_seq;
    CREATE SEQUENCE import_seq;
    CREATE SEQUENCE prediction_seq;
    CREATE SEQUENCE feedback_seq;
    CREATE SEQUENCE batch_seq;
    CREATE SEQUENCE event_seq;
    CREATE TABLE models (
        model_id INTEGER PRIMARY KEY,
        name VARCHAR NOT NULL UNIQUE,
        description VARCHAR NOT NULL DEFAULT '',
        task VARCHAR NOT NULL,
        labels VARCHAR[] NOT NULL,
        preprocess VARCHAR NOT NULL,      -- JSON
        model_config VARCHAR NOT NULL,    -- JSON
        active_version INTEGER,
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    CREATE TABLE versions (
        model_id INTEGER NOT NULL,
        version INTEGER NOT NULL,
        parent_version INTEGER,
        mode VARCHAR NOT NULL,
        model_config VARCHAR NOT NULL,    -- JSON, with the random seed
        preprocess VARCHAR NOT NULL,      -- JSON
        data VARCHAR NOT NULL,            -- JSON: rows by source, fingerprint
        metrics VARCHAR NOT NULL,         -- JSON
        max_example_id BIGINT NOT NULL,   -- newest example this version could have seen
        artifact VARCHAR NOT NULL,        -- path relative to the store's folder
        sha256 VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL,
        PRIMARY KEY (model_id, version)
    );
    CREATE TABLE examples (
        example_id BIGINT NOT NULL,
        model_id INTEGER NOT NULL,
        text VARCHAR NOT NULL,
        label VARCHAR NOT NULL,
        business_line VARCHAR,
        split VARCHAR NOT NULL,           -- train | test
        source VARCHAR NOT NULL,          -- import | feedback
        prediction_id BIGINT,
        import_id BIGINT,
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    CREATE TABLE example_tokens (
        example_id BIGINT NOT NULL,
        prep_hash VARCHAR NOT NULL,
        tokens VARCHAR[] NOT NULL
    );
    -- Append-only log, partitionable by (business_line, day): never updated in place.
    CREATE TABLE predictions (
        prediction_id BIGINT NOT NULL,
        model_id INTEGER NOT NULL,
        version INTEGER NOT NULL,
        text VARCHAR NOT NULL,
        text_key UBIGINT NOT NULL,        -- hash of the normalised text
        business_line VARCHAR NOT NULL,
        label VARCHAR NOT NULL,
        top_prob DOUBLE NOT NULL,
        probs DOUBLE[] NOT NULL,          -- in the order of the model's labels
        created_at TIMESTAMP NOT NULL,
        logged_at TIMESTAMP NOT NULL,
        source VARCHAR NOT NULL,
        created_by VARCHAR NOT NULL
    );
    CREATE TABLE feedback (
        feedback_id BIGINT NOT NULL,
        prediction_id BIGINT NOT NULL,
        model_id INTEGER NOT NULL,
        text_key UBIGINT NOT NULL,
        label VARCHAR NOT NULL,           -- a model label, or skip | unclear
        batch_id BIGINT,
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    CREATE TABLE sample_batches (
        batch_id BIGINT NOT NULL,
        model_id INTEGER NOT NULL,
        strategy VARCHAR NOT NULL,
        params VARCHAR NOT NULL,          -- JSON: k and filters
        prediction_ids BIGINT[] NOT NULL,
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    CREATE TABLE events (
        event_id BIGINT NOT NULL,
        "at" TIMESTAMP NOT NULL,
        "user" VARCHAR NOT NULL,
        action VARCHAR NOT NULL,
        model_id INTEGER,
        details VARCHAR NOT NULL          -- JSON
    );
    """),

    ("users and API tokens", """
    CREATE TABLE users (
        name VARCHAR PRIMARY KEY,
        role VARCHAR NOT NULL,            -- analyst | labeller | owner
        password_hash VARCHAR NOT NULL,   -- bcrypt
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    CREATE TABLE api_tokens (
        token_hash VARCHAR PRIMARY KEY,   -- sha256 of a random token; the token itself is never stored
        name VARCHAR NOT NULL,            -- the user the token acts as
        label VARCHAR NOT NULL DEFAULT '',
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    """),

    ("one label per prediction", """
    CREATE UNIQUE INDEX feedback_one_per_prediction ON feedback (prediction_id);
    """),

    ("dashboard sessions and sign-in attempts", """
    CREATE TABLE app_secrets (
        name VARCHAR PRIMARY KEY,         -- e.g. the key that signs dashboard session cookies
        value VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL
    );
    CREATE TABLE sessions (
        session_hash VARCHAR PRIMARY KEY, -- sha256 of the session id; the id itself is only in the cookie
        name VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        expires_at TIMESTAMP NOT NULL
    );
    CREATE TABLE session_handoffs (       -- one-time codes that put a session into a browser cookie
        code_hash VARCHAR PRIMARY KEY,
        token VARCHAR NOT NULL,           -- the signed session token, kept for at most a minute
        expires_at TIMESTAMP NOT NULL
    );
    CREATE TABLE sign_in_attempts (       -- what sign-in backoff counts; kept here so every process agrees
        subject VARCHAR NOT NULL,         -- a user name, or token@ADDRESS for an API token
        "at" TIMESTAMP NOT NULL,
        ok BOOLEAN NOT NULL
    );
    """),

    ("statistics rollups", f"""
    CREATE TABLE prediction_rollups (
        model_id INTEGER NOT NULL,
        version INTEGER NOT NULL,
        business_line VARCHAR NOT NULL,
        day DATE NOT NULL,                -- of created_at
        label VARCHAR NOT NULL,           -- predicted
        bucket INTEGER NOT NULL,          -- top_prob in [bucket / 100, (bucket + 1) / 100)
        n BIGINT NOT NULL,
        sum_top_prob DOUBLE NOT NULL
    );
    CREATE TABLE label_rollups (
        model_id INTEGER NOT NULL,
        version INTEGER NOT NULL,
        business_line VARCHAR NOT NULL,
        day DATE NOT NULL,                -- of the labelled prediction's created_at
        truth VARCHAR NOT NULL,           -- the label given, skip and unclear included
        predicted VARCHAR NOT NULL,
        n BIGINT NOT NULL                 -- negative for an undo
    );
    INSERT INTO prediction_rollups {_PREDICTION_ROLLUP.format(source="predictions")};
    INSERT INTO label_rollups {_LABEL_ROLLUP.format(sign=1, feedback="feedback")};
    """),

    # Drift measures of a business line x period cost a text sample and a small classifier: kept here
    # per (model, reference version, reference, line, period) and the volume they were computed on, so
    # a finished period is measured once. Append-only (no keys, as DuckLake needs); the newest row wins.
    ("drift cache", """
    CREATE TABLE drift_cells (
        model_id INTEGER NOT NULL,
        version INTEGER NOT NULL,         -- the reference version
        reference VARCHAR NOT NULL,       -- 'training' or a window 'since..until'
        business_line VARCHAR NOT NULL,
        period VARCHAR NOT NULL,          -- day | week | month
        period_start TIMESTAMP NOT NULL,
        n BIGINT NOT NULL,                -- predictions in the cell when measured
        measures VARCHAR NOT NULL,        -- JSON
        computed_at TIMESTAMP NOT NULL
    );
    """),

    # A version's note and tags, and the model each user last worked on. Append-only like the drift
    # cache (DuckLake has no keys to upsert on): the newest row per version, or per user, wins, and
    # the older rows are the history of the note.
    ("version notes and tags; each user's last model", """
    CREATE TABLE version_notes (
        model_id INTEGER NOT NULL,
        version INTEGER NOT NULL,
        note VARCHAR NOT NULL,
        tags VARCHAR[] NOT NULL,
        updated_at TIMESTAMP NOT NULL,
        updated_by VARCHAR NOT NULL
    );
    CREATE TABLE last_models (
        name VARCHAR NOT NULL,            -- the user
        model_id INTEGER NOT NULL,
        chosen_at TIMESTAMP NOT NULL
    );
    """),

    ("expected grade in the prediction rollups", f"""
    ALTER TABLE prediction_rollups ADD COLUMN sum_expected_grade DOUBLE;
    DELETE FROM prediction_rollups WHERE model_id IN (SELECT model_id FROM models WHERE task = 'ordinal');
    INSERT INTO prediction_rollups {_GRADED_ROLLUP.format(source=_ORDINAL_PREDICTIONS)};
    """),

    # A share of labelled items (chosen by a hash of the prediction id, so every process agrees) is
    # labelled again, blind, by a second labeller; where the two differ, or the first said unclear,
    # an owner's review decides. second_labels has feedback's columns (its ids come from feedback_seq,
    # so an undo takes either kind); reviews take ids from feedback_seq too, which makes two owners
    # deciding at once on DuckLake conflict at commit. All three tables are append-only.
    ("labelling overlap and review", """
    CREATE TABLE overlap_settings (
        model_id INTEGER NOT NULL,
        share DOUBLE NOT NULL,            -- of labelled items that a second labeller labels again
        set_at TIMESTAMP NOT NULL,
        set_by VARCHAR NOT NULL
    );
    CREATE TABLE second_labels (
        feedback_id BIGINT NOT NULL,
        prediction_id BIGINT NOT NULL,
        model_id INTEGER NOT NULL,
        text_key UBIGINT NOT NULL,
        label VARCHAR NOT NULL,           -- a model label, unclear, or skip (passed over: no opinion)
        batch_id BIGINT,
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    CREATE TABLE reviews (
        review_id BIGINT NOT NULL,
        prediction_id BIGINT NOT NULL,
        model_id INTEGER NOT NULL,
        label VARCHAR NOT NULL,           -- the label decided
        reason VARCHAR NOT NULL,          -- disagreement | unclear
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    """),

    # A skip on the Label page is no label: the item stays in the queue, behind the ones not skipped,
    # and the skip is kept so the counters (and an undo) read it from the store. Guidelines are an
    # owner's markdown per model. Both tables are append-only (DuckLake has no keys); the newest
    # guideline row wins.
    ("label skips and guidelines", """
    CREATE TABLE label_skips (
        prediction_id BIGINT NOT NULL,
        model_id INTEGER NOT NULL,
        batch_id BIGINT,
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    CREATE TABLE guidelines (
        model_id INTEGER NOT NULL,
        text VARCHAR NOT NULL,            -- markdown, shown as text (never as HTML)
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    """),

    # One decision per reviewed item: two owners deciding the same item at once must not both be
    # stored (the embedded file's appends never conflict otherwise; on DuckLake the ids' sequence
    # table already makes the second commit fail).
    ("one review per item", """
    CREATE UNIQUE INDEX reviews_one_per_item ON reviews (prediction_id);
    """),

    ("labelled predictions' slice fields", f"""
    CREATE TABLE labelled_predictions (
        prediction_id BIGINT NOT NULL,
        model_id INTEGER NOT NULL,
        version INTEGER NOT NULL,
        business_line VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        label VARCHAR NOT NULL            -- predicted
    );
    INSERT INTO labelled_predictions {_LABELLED_SELECT.format(labels="feedback")};
    """),

    # A labeller's reason beside a decision ("unclear: two products in one review", "skip: not Chinese"),
    # kept with it: written in the decision's transaction, gone with its undo, read on the Review page.
    ("comments on decisions", """
    CREATE TABLE decision_comments (
        model_id INTEGER NOT NULL,
        prediction_id BIGINT NOT NULL,
        decision VARCHAR NOT NULL,        -- the label given, or skip
        comment VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    """),

    # An import's key is the sha256 of its model, split and rows: a retry of an import that committed
    # (its answer lost when a server died) is recognised and writes nothing twice.
    ("import keys", """
    CREATE TABLE import_keys (
        import_key VARCHAR NOT NULL,      -- sha256 of the model, the split and the rows
        model_id INTEGER NOT NULL,
        import_id BIGINT NOT NULL,
        split VARCHAR NOT NULL,
        rows BIGINT NOT NULL,
        file VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    """),
    # Retraining policies and their runs; alert settings, alerts and their delivery attempts.
    # Policies and settings are append-only (the newest row per model wins); a run and an alert change state
    # in place by their id, taken from the event sequence (a run's id is that of the event that started it).
    ("retraining policies and runs; alerts and their delivery", """
    CREATE TABLE policies (
        model_id INTEGER NOT NULL,
        settings VARCHAR NOT NULL,        -- JSON
        set_at TIMESTAMP NOT NULL,
        set_by VARCHAR NOT NULL
    );
    CREATE TABLE policy_runs (
        run_id BIGINT NOT NULL,
        model_id INTEGER NOT NULL,
        "trigger" VARCHAR NOT NULL,       -- labels | drift | schedule
        details VARCHAR NOT NULL,         -- JSON: why, what was trained, the shadow, the guard's answer
        mode VARCHAR NOT NULL,            -- full | incremental
        state VARCHAR NOT NULL,           -- training | shadow | judging (open); activated | refused | failed
        version INTEGER,                  -- the version it trained
        result VARCHAR NOT NULL,          -- a sentence
        worker VARCHAR NOT NULL,          -- host:pid:start of the process running an open run's step
        run_by VARCHAR NOT NULL,          -- the owner whose policy it runs (permissions and audit)
        started_at TIMESTAMP NOT NULL,
        updated_at TIMESTAMP NOT NULL,
        finished_at TIMESTAMP
    );
    CREATE TABLE alert_settings (
        model_id INTEGER NOT NULL,
        settings VARCHAR NOT NULL,        -- JSON: thresholds and the webhook URL
        set_at TIMESTAMP NOT NULL,
        set_by VARCHAR NOT NULL
    );
    CREATE TABLE alerts (
        alert_id BIGINT NOT NULL,
        model_id INTEGER NOT NULL,
        kind VARCHAR NOT NULL,            -- drift | estimated_accuracy | audited_upper | volume_drop | policy_refused
        subject VARCHAR NOT NULL,         -- what it is about: raised once per model, kind and subject
        message VARCHAR NOT NULL,
        details VARCHAR NOT NULL,         -- JSON
        raised_at TIMESTAMP NOT NULL,
        state VARCHAR NOT NULL,           -- open | acknowledged
        acknowledged_at TIMESTAMP,
        acknowledged_by VARCHAR,
        delivery VARCHAR NOT NULL,        -- none (no webhook) | pending | sent | failed
        url VARCHAR NOT NULL,             -- the webhook it goes to ('' for none)
        attempts INTEGER NOT NULL,
        next_attempt_at TIMESTAMP
    );
    CREATE TABLE alert_deliveries (
        alert_id BIGINT NOT NULL,
        attempt INTEGER NOT NULL,
        "at" TIMESTAMP NOT NULL,
        url VARCHAR NOT NULL,
        ok BOOLEAN NOT NULL,
        status INTEGER,                   -- the receiver's HTTP status, if it answered
        error VARCHAR NOT NULL,           -- why it failed ('' when sent)
        seconds DOUBLE NOT NULL
    );
    """),
    # Probabilities a version gave texts of its hard-example pool, kept so that any process's next draw
    # reuses them (per version and model file: another version, or a restored store's other file, scores anew).
    ("stored hard-example scores", """
    CREATE TABLE version_scores (
        model_id INTEGER NOT NULL,
        version INTEGER NOT NULL,
        sha256 VARCHAR NOT NULL,          -- the scoring model file's
        text_key UBIGINT NOT NULL,
        probs DOUBLE[] NOT NULL,          -- in the order of the model's labels
        created_at TIMESTAMP NOT NULL
    );
    """),
    # Shadow versions: `shadows` (append-only) says which version of a model is in shadow (the newest
    # row; version NULL: none), `shadow_predictions` holds its answers to the logged predictions with
    # the slice fields and the answering version's label and confidence copied from the log.
    ("shadow versions", """
    CREATE TABLE shadows (
        model_id INTEGER NOT NULL,
        version INTEGER,                  -- NULL: no version in shadow from then on
        "at" TIMESTAMP NOT NULL,
        "by" VARCHAR NOT NULL
    );
    CREATE TABLE shadow_predictions (
        prediction_id BIGINT NOT NULL,
        model_id INTEGER NOT NULL,
        version INTEGER NOT NULL,         -- the shadow version that scored it
        active_version INTEGER NOT NULL,  -- the version that answered it
        text_key UBIGINT NOT NULL,        -- the prediction's (its normalised text's hash)
        business_line VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,    -- the prediction's
        logged_at TIMESTAMP NOT NULL,     -- the prediction's
        label VARCHAR NOT NULL,           -- the shadow's
        top_prob DOUBLE NOT NULL,
        probs DOUBLE[] NOT NULL,          -- the shadow's, in the order of the model's labels
        active_label VARCHAR NOT NULL,
        active_top_prob DOUBLE NOT NULL,
        scored_at TIMESTAMP NOT NULL
    );
    """),
    # Leases (core.leases): work that one process of a deployment does at a time, held by a process
    # that renews it, taken over by another once it lapses; lease_claims' one row is bumped by every
    # take, so two takes at once conflict on DuckLake too.
    ("leases for background work", """
    CREATE TABLE leases (
        name VARCHAR NOT NULL,            -- what is held: policy:<model_id> (its runs), shadow:<model_id> (its scoring)
        holder VARCHAR NOT NULL,          -- host:pid:start of the holding process
        "until" TIMESTAMP NOT NULL,       -- it lapses then unless renewed
        taken_at TIMESTAMP NOT NULL
    );
    CREATE TABLE lease_claims (n BIGINT NOT NULL);
    INSERT INTO lease_claims VALUES (0);
    """),
]


# --- which labels count: decided, trainable, audited, by a person ---------------------------

_OVERLAP = "hash({id}, 'mms-overlap') < ? * 18446744073709551615.0"
# Items whose two labels differ and that no review has decided yet: never trained on, never counted.
_UNDECIDED = """(SELECT s.prediction_id FROM second_labels s JOIN feedback f USING (prediction_id)
                 WHERE s.label <> 'skip' AND s.label <> f.label
                   AND s.prediction_id NOT IN (SELECT prediction_id FROM reviews))"""
# Each labelled item's label as training and statistics count it (columns prediction_id, model_id,
# label): the review's where one decided, else the first label, undecided disagreements left out.
_DECIDED = f"""(SELECT f.prediction_id, f.model_id, coalesce(r.label, f.label) AS label FROM feedback f
                LEFT JOIN (SELECT prediction_id, arg_max(label, review_id) AS label FROM reviews GROUP BY ALL) r
                          USING (prediction_id)
                WHERE f.prediction_id NOT IN {_UNDECIDED})"""
_TRAINABLE_EXAMPLE = f"(e.prediction_id IS NULL OR e.prediction_id NOT IN {_UNDECIDED})"

# The audit sample: a prediction is in it when a hash of its id falls below the share, so every
# line x period holds a random share of its predictions, whatever their confidence, drawn once
# and for good (a larger share keeps the smaller share's items).
_AUDIT = "hash(p.prediction_id, 'mms-audit') < ? * 18446744073709551615.0"

# Who counts as a person in team labelling: a labeller or owner of the store (in open mode, with no
# users, any name), never the demo builder, whose sample labels stand in for data and are nobody's
# judgement. Overlap items are items a person labelled; agreement pairs persons only.
_PERSON = """({who} NOT IN (SELECT "user" FROM events WHERE action = 'build_demo')
              AND ({who} IN (SELECT name FROM users WHERE role IN ('labeller', 'owner'))
                   OR NOT EXISTS (SELECT 1 FROM users)))"""
