"""A model file that loads but is not a working model (its sha256 recorded, so it passes the hash check)
gives a sentence, never a traceback (issue 27, item 11)."""
import joblib
import pytest
from sklearn.linear_model import LogisticRegression

from core import artifacts, cli, predict, registry
from core.errors import ArtifactError

M = "评论情感"


def _replace_model_file(store, obj) -> None:
    """Version 1's file holds `obj`, with its sha256 written into the registry as a restore would."""
    version = registry.get_version(store, M, 1)
    path = artifacts.verify(store, version)
    joblib.dump(obj, path)
    with store.transaction() as con:
        con.execute("UPDATE versions SET sha256 = ? WHERE version = 1", [artifacts.file_sha256(path)])


def _tokenizer(store):
    return artifacts.load(store, registry.get_version(store, M, 1))["tokenizer"]


@pytest.mark.parametrize("what", ["not a model", "an unfitted classifier", "not a pickle"])
def test_predict_with_a_malformed_model_file_says_so(seeded_store, what, capsys, tmp_path):
    tokenizer = _tokenizer(seeded_store)
    obj = {"not a model": {"weights": [1, 2, 3]},
           "an unfitted classifier": {"tokenizer": tokenizer, "pipeline": LogisticRegression()},
           "not a pickle": None}[what]
    if obj is None:
        version = registry.get_version(seeded_store, M, 1)
        path = artifacts.verify(seeded_store, version)
        path.write_bytes(b"these bytes are no pickle at all")
        with seeded_store.transaction() as con:
            con.execute("UPDATE versions SET sha256 = ? WHERE version = 1", [artifacts.file_sha256(path)])
    else:
        _replace_model_file(seeded_store, obj)
    with pytest.raises(ArtifactError, match="version 1's model file cannot be used"):
        predict.predict_texts(seeded_store, M, ["质量很好"], "tester", workers=1)
    texts = tmp_path / "texts.csv"
    texts.write_text("text\n质量很好\n", encoding="utf-8")
    code = cli.main(["--store", str(seeded_store.path), "--user", "tester", "predict", M, str(texts)])
    out, err = capsys.readouterr()
    assert code != 0 and "cannot be used" in err and "Traceback" not in err + out
