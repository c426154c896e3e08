"""The DuckDB store: the only package that speaks SQL.

engine      the two backends (embedded file, DuckLake), shared connections, ids, migrations applied
schema      every migration in order, and the SQL fragments migrations and queries share
access      users, API tokens, sign-in attempts, sessions, secrets, audit events
models      models, versions, version notes, each user's last model
examples    labelled examples, tokens, import keys, the reads training and drift make
predictions the predictions log, the slice filter, pools of unlabelled predictions
labels      first and second labels, reviews, skips, guidelines, comments, label history
statistics  statistics per line x period from the rollups, rollup upkeep, drift cells, revision
maintenance backup, migrate to the other backend, DuckLake file upkeep

Query functions take an open connection (`Store.connect()` or `Store.transaction()`) and return plain
data: dicts, lists, DataFrames. Callers use `from core import store as db` and `db.<function>`: every
topic's functions are re-exported here.
"""
from __future__ import annotations

from ..errors import StoreError
from .engine import (ID_BLOCK, LAKE, SEQUENCES, SERIAL_IDS, Store, _migrated, _shared_for, _SharedDatabase,
                     is_lake_url, lake_sql, now)
from .schema import _DECIDED, MIGRATIONS
from .access import (add_attempt, add_event, all_users, app_secret, delete_attempt, delete_session,
                     delete_user, events, failures_since_success, forget_attempts, has_attempts_before,
                     insert_app_secret, insert_handoff, insert_session, insert_token, session_user,
                     take_handoff, token_user, upsert_user, user_count, user_row)
from .models import (all_models, artifact_paths, busiest_model_name, insert_last_model, insert_model,
                     insert_version, insert_version_note, last_model_name, model_by_name,
                     next_version_number, set_active_version, update_model, version_notes, version_row,
                     version_rows)
from .examples import (example_line_counts, example_sample, example_summary, examples_since,
                       examples_with_tokens, import_by_key, insert_examples, insert_import_key,
                       insert_tokens, new_import_id, sample_example_ids, training_vocabulary)
from .predictions import (audit_queue, business_lines, hard_example_pool, insert_batch,
                          insert_predictions, LOG_COLUMNS, prediction_day_range, _prediction_filters,
                          prediction_sample, predictions_by_id, unlabelled_count,
                          VALUES_ROWS)
from .labels import (decision_comments, decision_times, delete_comment, delete_feedback,
                     delete_second_labels, delete_skip, double_labelled, feedback_counts, feedback_rows,
                     insert_comment, insert_feedback, insert_guidelines, insert_labelled_predictions,
                     insert_overlap_share, insert_review, insert_second_labels, insert_skip, label_history,
                     latest_guidelines, open_for_second_label, overlap_pool, overlap_share, relabelled,
                     review_queue, skip_count, skipped_predictions)
from .statistics import (audit_statistics, compact_rollups, confidence_histogram, drift_cells,
                         grade_label_errors, grade_statistics, hard_example_statistics, insert_drift_cells,
                         line_period_statistics, rebuild_rollups, revision)
from .maintenance import (add_bare_event, applied_migrations, attach_source, check_backup_migrations,
                          compact_lake_files, copy_table, create_schema, export_tables, lake_file_count,
                          load_table, NOT_BACKED_UP, open_bare, orphan_files, sequence_counters,
                          set_counters, SOURCE, source_counters)
from .loop import (new_event_id, add_event_with_id, insert_policy, policy_row, models_with_policy, insert_run,
                   update_run, run_row, run_rows, newest_max_example_id, insert_alert_settings,
                   alert_settings_row, models_with_alert_settings, alert_subjects, insert_alert, alert_row,
                   alert_rows, acknowledge_alert, due_deliveries, next_delivery_at, record_delivery,
                   delivery_rows)
from .loop import lease_row, put_lease, renew_lease
from .scores import (hard_example_sample, insert_version_scores)
from .shadows import (current_shadows, insert_shadow, insert_shadow_predictions, shadow_counts, shadow_histogram,
                      shadow_pending, shadow_pending_count, shadow_probabilities, shadow_scored_count,
                      shadow_versions_scored, shadow_watermark)
