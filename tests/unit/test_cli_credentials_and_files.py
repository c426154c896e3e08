"""The command line as a new user met it (issue 22, item 10): reads need no token, the first token
comes from a password on stdin, a parent is a version number, hard examples go out as a file to
fill in (the model's guess beside an empty label), and --out is plain unless --excel asks otherwise."""
import io
import json

import pandas as pd

import storeprobe as probe
from core import auth, cli, registry, train

M = "评论情感"


def call(store, *args, capsys, stdin: str = "", monkeypatch=None):
    """Run the CLI in this process, as a script would (no terminal): (exit code, stdout, stderr)."""
    if monkeypatch is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    try:
        code = cli.main(["--store", str(store.path), *map(str, args)])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def counts(store):
    with store.connect() as con:
        return probe.table_counts(con)


def with_owner(store):
    auth.add_user(store, "olga", "owner", "olga-pass-1", by="setup")
    auth.add_user(store, "lars", "labeller", "lars-pass-1", by="olga")


def test_compare_only_reads_so_it_needs_no_token(seeded_store, capsys):
    train.train_version(seeded_store, M, "tester", model_config={"estimator": "complement_nb"})
    with_owner(seeded_store)
    code, out, err = call(seeded_store, "compare", M, "1", "2", capsys=capsys)
    assert code == 0, err
    assert out.startswith("version 2 beside version 1")


def test_the_first_token_comes_from_the_owners_password_on_stdin(seeded_store, capsys, monkeypatch):
    with_owner(seeded_store)
    code, _, err = call(seeded_store, "create-token", "olga", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and "--password-stdin" in err and "MMS_TOKEN" not in err, err

    code, out, err = call(seeded_store, "create-token", "olga", "--password-stdin", stdin="wrong\n",
                          capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1 and "token" not in out, err

    code, out, err = call(seeded_store, "--format", "json", "create-token", "olga", "--password-stdin",
                          stdin="olga-pass-1\n", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0, err
    token = json.loads(out)["token"]
    assert auth.token_identity(seeded_store, token) == auth.Identity("olga", "owner")
    # an owner makes a labeller's token with her own password
    code, out, err = call(seeded_store, "--format", "json", "--user", "olga", "create-token", "lars",
                          "--password-stdin", stdin="olga-pass-1\n", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0, err
    assert auth.token_identity(seeded_store, json.loads(out)["token"]).name == "lars"


def test_a_parent_is_a_version_number_or_a_dash(seeded_store, capsys):
    code, out, err = call(seeded_store, "train", M, "--config", '{"estimator": "complement_nb"}', capsys=capsys)
    assert code == 0, err
    assert "parent: 1\n" in out and "None" not in out
    code, out, err = call(seeded_store, "--format", "json", "versions", M, capsys=capsys)
    assert [v["parent"] for v in json.loads(out)] == [None, 1]
    code, out, err = call(seeded_store, "versions", M, capsys=capsys)
    header, v1, v2 = out.splitlines()[:3]
    end = header.index(" parent") + len(" parent")
    assert (v1[:end].split()[-1], v2[:end].split()[-1]) == ("–", "1"), out


def test_hard_examples_go_out_with_the_guess_beside_an_empty_label(seeded_store, tmp_path, capsys):
    out_file = tmp_path / "to_label.csv"
    code, _, err = call(seeded_store, "hard-examples", M, "--k", "5", "--out", out_file, capsys=capsys)
    assert code == 0, err
    rows = pd.read_csv(out_file, dtype=str, keep_default_na=False)
    assert (rows["label"] == "").all()
    assert set(rows["suggested_label"]) <= {"正面", "负面"} and len(rows) == 5

    before = counts(seeded_store)
    code, _, err = call(seeded_store, "--user", "lars", "label", M, out_file, capsys=capsys)  # fed back unchanged
    assert code == 2 and "every label is empty, so nothing was recorded" in err, err
    assert counts(seeded_store) == before  # no guess recorded as a label

    rows["label"] = rows["suggested_label"]  # a labeller who agrees with every guess says so
    rows.to_csv(out_file, index=False)
    code, out, err = call(seeded_store, "--user", "lars", "label", M, out_file, capsys=capsys)
    assert code == 0 and "recorded: 5" in out, err


def test_out_is_plain_and_excel_guards_formula_cells(seeded_store, tmp_path, capsys):
    texts = tmp_path / "texts.csv"
    texts.write_text("text\n@客服 快递太慢了\n=很好用\n", encoding="utf-8")
    plain, excel = tmp_path / "plain.csv", tmp_path / "excel.csv"
    assert call(seeded_store, "predict", M, texts, "--out", plain, capsys=capsys)[0] == 0
    assert call(seeded_store, "predict", M, texts, "--out", excel, "--excel", capsys=capsys)[0] == 0
    assert pd.read_csv(plain, encoding="utf-8")["text"].tolist() == ["@客服 快递太慢了", "=很好用"]
    assert pd.read_csv(excel, encoding="utf-8-sig")["text"].tolist() == ["'@客服 快递太慢了", "'=很好用"]
    code, out, _ = call(seeded_store, "--format", "csv", "predict", M, texts, capsys=capsys)
    assert ",@客服 快递太慢了," in out and "'@" not in out  # printed for a script, as stored


def test_stats_out_has_the_drift_columns(seeded_store, tmp_path, capsys):
    out_file = tmp_path / "stats.csv"
    code, _, err = call(seeded_store, "stats", M, "--by", "week", "--out", out_file, capsys=capsys)
    assert code == 0, err
    columns = set(pd.read_csv(out_file).columns)
    assert {"drift_flagged", "drift_status", "drift_moved", "text_auc", "unseen_share"} <= columns, columns
