"""Every setting, declared once with its default and help; read from the environment.

A setting `name` is read from the environment variable `MMS_<NAME>` (upper case)."""
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    name: str
    default: object
    help: str

    @property
    def env(self) -> str:
        return "MMS_" + self.name.upper()


SETTINGS = {
    s.name: s
    for s in [
        Setting("store", "data/mms.duckdb", "Path of the DuckDB store file, or a DuckLake catalog: "
                                           "ducklake:postgres:dbname=... host=... port=... user=..."),
        Setting("data_path", "", "Where a DuckLake store (MMS_STORE=ducklake:postgres:...) keeps its Parquet files and "
                                 "model files: a folder every process sees, or s3://bucket/prefix."),
        Setting("lake_inline_rows", 1000, "Rows of one DuckLake insert kept in the catalog instead of a Parquet "
                                          "file, until compaction writes them out together."),
        Setting("compact_seconds", 600.0, "Seconds between the server's compactions: rollup rows merged, and on "
                                          "DuckLake inlined rows and small Parquet files written out as larger "
                                          "files (0: never)."),
        Setting("prescore_seconds", 5.0, "Seconds between the server's looks for a newly active version: one that "
                                         "logged few of the hard-example pool has the pool scored in the "
                                         "background, so the first batch after a retrain is drawn at once (0: never)."),
        Setting("shadow_seconds", 2.0, "Seconds between the server's looks for predictions a version in shadow has "
                                       "not scored yet; they are scored in a low-priority worker process, never "
                                       "on the request path (0: never; `python -m core shadow MODEL --catch-up` "
                                       "scores them once)."),
        Setting("lock_timeout", 5.0, "Seconds to retry when another process holds the store's lock."),
        Setting("log_committers", 1, "Threads that commit the server's prediction log on an embedded store: with "
                                     "2, one batch's inserts run while the other waits for its disk sync, at "
                                     "the cost of smaller commits (more CPU per prediction); DuckLake uses 1."),
        Setting("serving_processes", 0, "Serving processes that `streamlit run app.py` starts beside the dashboard: "
                                        "each answers POST /api/models/{name}/predict on MMS_SERVING_PORT in its own "
                                        "interpreter (an embedded store's rows are handed to the server, the one "
                                        "writer; on DuckLake each writes). 0: none, the dashboard's port serves."),
        Setting("serving_port", 0, "Port of the serving processes (all share it); 0: the dashboard's port + 1."),
        Setting("serving_address", "127.0.0.1", "Address the serving processes listen on: this machine only "
                                               "unless set (0.0.0.0: every interface; callers then need tokens)."),
        Setting("low_confidence", 0.6, "Top probability below which a prediction counts as low-confidence."),
        Setting("max_text_chars", 20000, "Longest text accepted for import or prediction, in characters."),
        Setting("max_batch", 10000, "Most texts in one prediction request: from the API, and typed or uploaded on "
                                    "the Predict page (the command line's `predict FILE` is not limited)."),
        Setting("max_request_mb", 50.0, "Largest API request body, in MB; a larger one is refused with 413 before "
                                        "it is read, and a body is read only once the caller is known."),
        Setting("max_workbook_rows", 200000, "Most rows read from one sheet of an Excel workbook."),
        Setting("max_workbook_mb", 100.0, "Largest size, in MB, that an Excel workbook (a zip file) may expand to "
                                          "when read: a small file can hold gigabytes of repeated XML."),
        Setting("workers", 0, "Processes that tokenise a large prediction batch (0: one per core)."),
        Setting("user", "cli", "Name recorded on writes made from the command line."),
        Setting("token", "", "API token that identifies the command line's user once the store has users "
                             "(from `python -m core create-token NAME`); writes need it or a password."),
        Setting("signin_max_failures", 5, "Failed sign-ins for one user name (since its last success, within "
                                          "a day) before sign-in is refused for a while."),
        Setting("signin_lockout", 60, "Seconds sign-in is refused after the last allowed failure; doubles "
                                      "with every further failure."),
        Setting("signin_lockout_max", 3600, "Longest refusal after failed sign-ins, in seconds."),
        Setting("trusted_proxies", "", "Comma-separated addresses (or networks, 10.0.0.0/8) of reverse proxies whose "
                                       "X-Forwarded-For header names the client; from anyone else the header is "
                                       "ignored. Default: none."),
        Setting("backup_key", "", "Key (any long random text) that signs backups and checks them at restore. "
                                  "Unset: a key the store keeps, so its backups restore into it only; set it to "
                                  "restore on another machine or after losing the store."),
        Setting("session_hours", 12.0, "Hours a dashboard sign-in lasts in a browser, across reloads."),
        Setting("guard_level", 0.05, "Significance level of the promotion guard: a fall counts only when its "
                                      "one-sided paired test on the shared test rows gives p below this (Holm-"
                                      "corrected over the figures of one comparison), and a version must beat "
                                      "the trivial answer (majority class, median grade) at this level."),
        Setting("guard_overall", 0.005, "Smallest fall in accuracy (0.005 = 0.5 pp) or quadratic weighted kappa "
                                        "that the guard counts, when significant (guard_level)."),
        Setting("guard_class_recall", 0.02, "Smallest fall in a class's recall that the guard counts, when "
                                            "significant."),
        Setting("guard_line_accuracy", 0.03, "Smallest fall in a business line's accuracy that the guard counts, "
                                             "when significant."),
        Setting("guard_ordinal_mae", 0.02, "Smallest rise in an ordinal version's mean absolute error (in grades) "
                                           "that the guard counts, when significant."),
        Setting("guard_line_ordinal_mae", 0.05, "Smallest rise in a business line's mean absolute error (grades) of "
                                                "an ordinal version that the guard counts, when significant."),
        Setting("guard_line_min_rows", 30, "Test rows a business line needs before the activation guard judges "
                                           "it; fewer are reported as too few, never as a fall."),
        Setting("selection_budget", 0.0, "Seconds model selection may spend cross-validating candidates "
                                         "(0: 20 s plus 15 s per 1,000 training rows, at most 180 s)."),
        Setting("hard_example_pool", 20000, "Distinct unlabelled texts of a slice that the chosen version scores "
                                            "when a batch of hard examples is drawn: all of them, or a uniform sample "
                                            "of this many over the slice's whole history (one per version)."),
        Setting("estimate_max_ece", 0.05, "Largest calibration error (ECE on the test split) of a version whose "
                                          "probabilities the Monitor turns into an estimated accuracy."),
        Setting("audit_share", 0.02, "Share of every business line x period drawn at random into the audit "
                                     "sample, whose labels give the audited accuracy."),
        Setting("drift_render_seconds", 2.0, "Seconds a Monitor render may spend measuring drift cells that are "
                "not cached yet; the rest show as not measured yet while the server measures them."),
        Setting("drift_keep_seconds", 300.0, "Seconds a Monitor render keeps using a drift cell's cached measures "
                "after its volume grew by a tenth (live traffic grows the open period's cells on every render): "
                "each is measured again at most this often on the page."),
        Setting("drift_sample", 300, "Texts sampled per business line x period (and per reference) for the "
                                     "input-drift measures."),
        Setting("drift_min_reference", 50, "Reference texts a business line needs before its drift is judged."),
        Setting("drift_min_predictions", 50, "Predictions a business line x period needs before its drift is judged."),
        Setting("drift_text_auc", 0.75, "ROC AUC of a classifier telling reference from current texts (character "
                                        "n-grams) above which a line's texts have drifted (0.5: no difference)."),
        Setting("drift_unseen_tokens", 0.05, "Rise in the share of tokens the training data never had, over the "
                                             "held-out reference's share, that counts as drift."),
        Setting("drift_length", 0.5, "Relative change in mean text length (0.5 = 50 %) that counts as drift."),
        Setting("drift_confidence", 0.05, "Change in mean confidence against the reference that counts as drift."),
        Setting("drift_class_mix", 0.15, "Total variation distance between the predicted class mix and the "
                                         "reference's that counts as drift."),
        Setting("drift_grade_shift", 0.25, "For an ordinal model: grades the predicted grade distribution moved "
                                           "against the reference's (earth mover's distance) that counts as drift."),
        Setting("policy_seconds", 60.0, "Seconds between the server's due checks of retraining policies and alert "
                                        "thresholds (0: never; `python -m core policy check` runs one by hand)."),
        Setting("alert_retry_seconds", 2.0, "Seconds before an alert's webhook is tried again after a failed "
                                            "attempt; the wait doubles with every further failure."),
        Setting("alert_retry_max_seconds", 300.0, "Longest wait between two attempts to send an alert."),
        Setting("alert_attempts", 10, "Attempts to send an alert to its webhook before it is recorded as failed."),
    ]
}


def get(name: str):
    """The value of setting `name`: the environment's if set, else the default, cast to its type."""
    s = SETTINGS[name]
    raw = os.environ.get(s.env)
    if raw is None or raw == "":
        return s.default
    return type(s.default)(raw)
