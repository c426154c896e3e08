"""core.compare.compare_versions: N versions against a chosen base, as the Versions page shows them
(issue 22 item 7): readable names, formatted values, a delta per version, better or worse."""
from test_compare import version

from core import compare


def rows(frame):
    return frame.set_index("what")


def test_each_version_gets_its_value_and_its_delta_from_the_base():
    base = version(1, accuracy=0.80, data={"rows": 1000, "test_rows": 200, "rows_by_source": {"import": 1000}})
    better = version(2, accuracy=0.83, data={"rows": 1040, "test_rows": 200,
                                             "rows_by_source": {"import": 1000, "feedback": 40}})
    worse = version(3, accuracy=0.78, model_config={"estimator": "complement_nb", "C": 4.0})
    worse.metrics["log_loss"] = 0.50  # higher: worse
    frame = compare.compare_versions([base, better, worse], base)
    assert [c for c in frame.columns if not c.startswith("better")] == ["section", "what", "v1 (base)", "v2", "Δ v2",
                                                                         "v3", "Δ v3", "differs"]
    r = rows(frame)
    assert (r.loc["Accuracy", "v1 (base)"], r.loc["Accuracy", "v2"], r.loc["Accuracy", "Δ v2"]) == ("80.0%", "83.0%",
                                                                                                    "+3.0 pp")
    assert r.loc["Accuracy", "better v2"] is True and r.loc["Accuracy", "better v3"] is False
    assert (r.loc["Log loss", "Δ v3"], r.loc["Log loss", "better v3"]) == ("+0.050", False)  # lower is better
    assert r.loc["estimator", "Δ v3"] == "changed" and r.loc["estimator", "Δ v2"] == ""
    assert r.loc["rows from labelling", "v1 (base)"] == "0" and r.loc["rows from labelling", "Δ v2"] == "+40"
    assert list(r.index).index("rows from labelling") == list(r.index).index("rows imported") + 1
    assert not r.loc["Macro-F1", "differs"] and r.loc["Accuracy", "differs"]


def test_the_sections_come_in_reading_order_and_no_raw_key_or_json_shows():
    v = version(1, data={"rows": 10, "test_rows": 5, "fingerprint": "ab" * 32,
                         "selection": {"reason": "CV best", "tried": [{"config": {}, "cv_macro_f1": 0.8}],
                                       "chosen": {}, "scoring": "macro_f1"}})
    frame = compare.compare_versions([v], v)
    assert list(dict.fromkeys(frame["section"])) == [s for s in compare.SECTIONS if s in set(frame["section"])]
    assert not [w for w in frame["what"] if "." in w or "_" in w]
    cells = frame["v1 (base)"].tolist()
    assert not [c for c in cells if c.startswith(("[", "{"))]
    assert rows(frame).loc["training data (fingerprint)", "v1 (base)"] == "ab" * 6
