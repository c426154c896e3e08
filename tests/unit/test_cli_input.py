"""The command line's input contract (issue 12): bad arguments and files are one sentence on stderr
and exit code 2, with nothing written; output files are plain UTF-8; `--help` is quick to start."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import storeprobe as probe
from core import cli, export, registry
from core.errors import InvalidInput

ROOT = Path(__file__).resolve().parents[2]
M = "评论情感"


def _counts(store):
    with store.connect() as con:
        return probe.table_counts(con)


def call(store, *args, capsys):
    """Run the CLI in this process: (exit code, stdout, stderr); argparse's own exits become codes too."""
    try:
        code = cli.main(["--store", str(store.path), "--user", "tester", *map(str, args)])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_sentence(code, err, *fragments):
    lines = [line for line in err.splitlines() if not line.startswith("[")]  # not progress lines
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- 18: start-up, option order, CSV encoding -----------------------------------------------------

def test_help_starts_without_the_heavy_libraries():
    probe = ("import runpy, sys\n"
             "sys.argv = ['python -m core', '--help']\n"
             "try:\n    runpy.run_module('core', run_name='__main__')\n"
             "except SystemExit as e:\n    assert e.code == 0, e.code\n"
             "print(sorted(m for m in ('sklearn', 'jieba', 'pandas', 'streamlit') if m in sys.modules),"
             " file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "hard-examples" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == "[]"


def test_the_server_starts_without_scikit_learn():
    probe = ("import sys, core.server, core.api\n"
             "print(sorted(m for m in ('sklearn', 'scipy', 'streamlit') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"  # models load it when a pipeline is read


def test_a_missing_value_prints_as_a_dash_not_none(seeded_store, capsys):
    code, out, err = call(seeded_store, "versions", M, capsys=capsys)
    assert code == 0, err
    header, first = out.splitlines()[:2]
    end = header.index(" parent") + len(" parent")  # the columns are right-aligned under their names
    assert first[:end].split()[-1] == "–"  # v1 has no parent
    assert "None" not in out and "NaN" not in out


def test_common_options_go_before_or_after_the_command(seeded_store, capsys):
    code, after, err = call(seeded_store, "versions", M, "--format", "json", capsys=capsys)
    assert code == 0, err
    assert [v["version"] for v in json.loads(after)] == [1]
    code, out, err = cli.main(["--format", "json", "versions", M, "--store", str(seeded_store.path)]), *capsys.readouterr()
    assert code == 0 and json.loads(out) == json.loads(after)
    code, out, _ = call(seeded_store, "--format", "json", "models", capsys=capsys)
    assert code == 0 and json.loads(out)[0]["model"] == M


def test_out_files_are_plain_utf8_unless_excel_is_asked_for(seeded_store, tmp_path, capsys):
    plain, excel = tmp_path / "stats.csv", tmp_path / "stats-excel.csv"
    assert call(seeded_store, "stats", M, "--out", plain, capsys=capsys)[0] == 0
    assert call(seeded_store, "stats", M, "--out", excel, "--excel", capsys=capsys)[0] == 0
    assert not plain.read_bytes().startswith(b"\xef\xbb\xbf")
    assert pd.read_csv(plain, encoding="utf-8").columns[0] == "business_line"
    assert excel.read_bytes().startswith(b"\xef\xbb\xbf")
    # the same table either way (two runs of `stats`: DuckDB's parallel sums may differ in the last digit)
    pd.testing.assert_frame_equal(pd.read_csv(excel, encoding="utf-8-sig"), pd.read_csv(plain, encoding="utf-8"),
                                  check_exact=False, rtol=1e-9)


def test_dashboard_downloads_keep_the_bom_for_excel():
    frame = pd.DataFrame({"text": ["好评"]})
    assert export.to_csv_bytes(frame).startswith(b"\xef\xbb\xbf")
    assert not export.to_csv_bytes(frame, bom=False).startswith(b"\xef\xbb\xbf")


# --- 4: label ids are whole numbers as written ----------------------------------------------------

def _some_prediction_ids(store, capsys, k=2):
    code, out, err = call(store, "--format", "json", "hard-examples", M, "--k", k, capsys=capsys)
    assert code == 0, err
    return [r["prediction_id"] for r in json.loads(out)]


@pytest.mark.parametrize("written,fragment", [
    ("{id}.7", "'{id}.7' is not a number in row 2: ids are whole numbers"),
    ("1e1", "'1e1' is not a number in row 2: ids are whole numbers"),
    ("{id}.0", "'{id}.0' is not a number in row 2: ids are whole numbers"),
    ("-{id}", "'-{id}' is not a number in row 2: ids are whole numbers"),
    ("99999999999999999999", "prediction_id 99999999999999999999 in row 2 is too large"),
])
def test_label_refuses_ids_that_are_not_whole_numbers(seeded_store, tmp_path, capsys, written, fragment):
    first = _some_prediction_ids(seeded_store, capsys)[0]
    path = tmp_path / "labels.csv"
    path.write_text(f"prediction_id,label\n{written.format(id=first)},正面\n", encoding="utf-8")
    before = _counts(seeded_store)
    code, _, err = call(seeded_store, "label", M, path, capsys=capsys)
    assert_one_sentence(code, err, fragment.format(id=first))
    assert _counts(seeded_store) == before


def test_label_names_the_row_of_a_bad_id_and_records_nothing(seeded_store, tmp_path, capsys):
    first, second = _some_prediction_ids(seeded_store, capsys)
    path = tmp_path / "labels.csv"
    path.write_text(f"prediction_id,label\n{first},正面\n{second}.5,负面\n", encoding="utf-8")
    before = _counts(seeded_store)
    code, _, err = call(seeded_store, "label", M, path, capsys=capsys)
    assert_one_sentence(code, err, "row 3")
    assert _counts(seeded_store) == before
    path.write_text(f"prediction_id,label\n {first} ,正面\n{second},负面\n", encoding="utf-8")
    code, out, err = call(seeded_store, "label", M, path, capsys=capsys)
    assert code == 0 and "recorded: 2" in out, err


# --- 5: --out is checked before anything is logged ------------------------------------------------

def test_predict_to_a_missing_folder_logs_nothing(seeded_store, tmp_path, capsys):
    texts = tmp_path / "texts.csv"
    texts.write_text("text\n质量不错\n服务很差\n", encoding="utf-8")
    before = _counts(seeded_store)
    for out in (tmp_path / "missing" / "x.csv", tmp_path):
        code, _, err = call(seeded_store, "predict", M, texts, "--out", out, capsys=capsys)
        assert_one_sentence(code, err, str(out))
        assert _counts(seeded_store) == before
    code, _, err = call(seeded_store, "predict", M, texts, "--out", tmp_path / "x.csv", capsys=capsys)
    assert code == 0 and len(pd.read_csv(tmp_path / "x.csv")) == 2, err


@pytest.mark.parametrize("command", [["hard-examples", M, "--k", "3"], ["stats", M]])
def test_every_out_is_checked_first(seeded_store, tmp_path, capsys, command):
    before = _counts(seeded_store)
    code, _, err = call(seeded_store, *command, "--out", tmp_path / "nowhere" / "x.csv", capsys=capsys)
    assert_one_sentence(code, err, "does not exist")
    assert _counts(seeded_store) == before


# --- 6: model names -------------------------------------------------------------------------------

@pytest.mark.parametrize("name,fragment", [
    ("..", "only dots"), (".", "only dots"), ("...", "only dots"),
    ("a\x01b", "control characters"), ("a\tb", "control characters"), ("a\nb", "control characters"),
    ("a\x7fb", "control characters"),
])
def test_model_names_of_dots_or_with_control_characters_are_refused(store, capsys, name, fragment):
    code, _, err = call(store, "create-model", name, "--labels", "a,b", capsys=capsys)
    assert_one_sentence(code, err, fragment)
    assert registry.list_models(store) == []


def test_a_nul_in_a_model_name_is_refused_in_core(store):
    with pytest.raises(InvalidInput, match="control characters"):
        registry.create_model(store, "a\x00b", ["a", "b"], "tester")
    registry.create_model(store, " 评论 情感.v2 ", ["a", "b"], "tester")
    assert [m.name for m in registry.list_models(store)] == ["评论 情感.v2"]


# --- 7: numbers and configs out of range ----------------------------------------------------------

@pytest.mark.parametrize("args,fragment", [
    (["hard-examples", M, "--k", "99999999999999999999"], "--k"),
    (["hard-examples", M, "--k", "0"], "--k"),
    (["events", "--limit", "-1"], "--limit"),
    (["events", "--limit", "99999999999999999999"], "--limit"),
    (["events", "--limit", "ten"], "--limit"),
    (["activate", M, "99999999999999999999"], "version"),
    (["stats", M, "--version", "-3"], "--version"),
    (["train", M, "--config", '{"word_ngrams": 5}'], "word_ngrams"),
    (["train", M, "--config", '{"word_ngrams": [1, "a"]}'], "word_ngrams"),
    (["train", M, "--config", '{"char_ngrams": [3, 1]}'], "char_ngrams"),
    (["train", M, "--config", '{"C": "x"}'], "C must be a positive number"),
    (["train", M, "--config", '{"C": NaN}'], "C must be a positive number"),
    (["train", M, "--config", '{"alpha": -1}'], "alpha must be a positive number"),
    (["train", M, "--config", '{"max_iter": -1}'], "max_iter"),
    (["train", M, "--config", '{"max_iter": "100"}'], "max_iter"),
    (["train", M, "--config", '{"seed": -1}'], "seed"),
    (["train", M, "--config", '{"estimator": "sgd", "n_features": 99999999999999999999}'], "n_features"),
    (["train", M, "--config", '{"estimator": {"nested": ["junk"]}}'], "estimator must be one of"),
    (["train", M, "--config", '{"min_df": [1]}'], "min_df"),
    (["train", M, "--config", '{"epochs": true}'], "epochs"),
    (["create-model", "x", "--labels", "a,b", "--config", '{"max_features": 0}'], "max_features"),
])
def test_numbers_and_configs_out_of_range_are_one_sentence(seeded_store, capsys, args, fragment):
    before = _counts(seeded_store)
    code, _, err = call(seeded_store, *args, capsys=capsys)
    assert_one_sentence(code, err, fragment)
    assert {k: v for k, v in _counts(seeded_store).items() if k != "events"} == \
        {k: v for k, v in before.items() if k != "events"}


@pytest.mark.parametrize("args,fragment", [
    ([], "required: COMMAND"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["versions"], "required: name"),
    (["versions", M, "--format", "xml"], "--format"),
    (["hard-examples", M, "--strategy", "best"], "--strategy"),
    (["add-user", "x", "--role", "boss"], "--role"),
    (["import", M, "f.csv", "--split", "dev"], "--split"),
    (["stats", M, "--by", "year"], "--by"),
    (["versions", M, "--no-such-option"], "unrecognized arguments"),
])
def test_argparse_mistakes_are_one_sentence_and_exit_2(seeded_store, capsys, args, fragment):
    code, _, err = call(seeded_store, *args, capsys=capsys)
    assert_one_sentence(code, err, fragment)


@pytest.mark.parametrize("args", [
    ["import", M, "{tmp}/missing.csv", "--split", "train"],
    ["predict", M, "{tmp}/missing.csv"],
    ["label", M, "{tmp}/missing.csv"],
    ["predict", M, "{tmp}"],
    ["train", M, "--config", "[1, 2]"],
    ["create-model", M, "--labels", "a,b"],
    ["create-model", "y", "--labels", ","],
    ["activate", M, "7"],
    ["hard-examples", M, "--until", "someday"],
    ["stats", M, "--since", "2026-13-45"],
    ["hard-examples", "nope"],
    ["events", "nope"],
    ["remove-user", "nobody"],
    ["create-token", "nobody"],
    ["backup", "{tmp}/seeded/mms.duckdb"],
    ["restore", "{tmp}"],
])
def test_bad_arguments_to_every_command_are_one_sentence(seeded_store, tmp_path, capsys, args):
    args = [a.format(tmp=tmp_path) for a in args]
    before = _counts(seeded_store)
    code, _, err = call(seeded_store, *args, capsys=capsys)
    assert_one_sentence(code, err)
    assert {k: v for k, v in _counts(seeded_store).items() if k != "events"} == \
        {k: v for k, v in before.items() if k != "events"}
