import pickle

import pytest

from core.errors import InvalidInput
from core.preprocess import PreprocessConfig, Tokenizer, normalise, preview


def test_new_words_apply_to_their_model_only():
    plain = preview({}, "这个蓝牙耳机真好用")
    custom = preview({"new_words": ["蓝牙耳机"]}, "这个蓝牙耳机真好用")
    assert "蓝牙耳机" in custom
    assert "蓝牙耳机" not in plain
    assert "蓝牙耳机" not in preview({}, "这个蓝牙耳机真好用")  # the other model is unaffected


def test_stop_words_and_punctuation_are_dropped():
    tokens = preview({"stop_words": ["的", "了"]}, "房间的空调坏了！")
    assert "的" not in tokens and "了" not in tokens and "！" not in tokens
    assert "空调" in tokens


def test_fullwidth_and_case_are_normalised():
    assert normalise("ＡＢＣ１２３ Hello") == "abc123 hello"
    assert "abc" in preview({}, "ＡＢＣ很好")
    assert "Ａ" in preview({"fullwidth_to_halfwidth": False, "lowercase": False}, "ＡＢＣ很好")


def test_cut_modes_differ():
    accurate = preview({}, "中华人民共和国成立了")
    full = preview({"cut_mode": "full"}, "中华人民共和国成立了")
    assert len(full) > len(accurate)


def test_tokenizer_pickles_as_its_config():
    tk = Tokenizer({"new_words": ["蓝牙耳机"], "stop_words": ["的"]})
    tk("预热")
    clone = pickle.loads(pickle.dumps(tk))
    assert clone.config == tk.config
    assert clone("我的蓝牙耳机") == tk("我的蓝牙耳机")
    assert len(pickle.dumps(tk)) < 1000  # no jieba dictionary inside


def test_unknown_setting_is_a_clear_error():
    with pytest.raises(InvalidInput, match="unknown preprocessing setting"):
        PreprocessConfig.from_dict({"cutmode": "full"})
    with pytest.raises(InvalidInput, match="cut_mode must be one of"):
        PreprocessConfig.from_dict({"cut_mode": "fast"})


def test_config_fingerprint_follows_settings():
    a = PreprocessConfig.from_dict({"stop_words": ["的", "了"]})
    b = PreprocessConfig.from_dict({"stop_words": "了,的"})
    assert a == b and a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != PreprocessConfig().fingerprint()


@pytest.mark.parametrize("bad", [{"stop_words": 7}, {"new_words": [1, None]}, {"hmm": "yes"},
                                 {"lowercase": [1]}, {"new_words": {"a": 1}}, {"cut_mode": "fast"}])
def test_a_malformed_preprocessing_config_is_a_sentence_not_a_traceback(bad):
    from core.errors import InvalidInput
    from core.preprocess import PreprocessConfig

    with pytest.raises(InvalidInput, match=next(iter(bad))):
        PreprocessConfig.from_dict(bad)
