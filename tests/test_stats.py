"""Statistics that the Monitor draws, computed in core: the class mix per business line."""
import pandas as pd
import pytest

from core import stats

M = "评论情感"


def test_class_mix_weighs_each_period_by_its_volume():
    table = pd.DataFrame({"business_line": ["酒店", "酒店", "图书"], "volume": [30, 10, 5],
                          "share_正面": [1.0, 0.0, 0.4], "share_负面": [0.0, 1.0, 0.6]})
    mix = stats.class_mix_by_line(table, ["正面", "负面"]).set_index(["business_line", "label"])["share"]
    assert mix[("酒店", "正面")] == pytest.approx(0.75) and mix[("酒店", "负面")] == pytest.approx(0.25)
    assert mix[("图书", "正面")] == pytest.approx(0.4)
    assert stats.class_mix_by_line(table.iloc[0:0], ["正面", "负面"]).empty


def test_class_mix_matches_the_log(seeded_store):
    mix = stats.class_mix_by_line(stats.stats_by_line_and_period(seeded_store, M, "week"), ["正面", "负面"])
    with seeded_store.connect() as con:
        log = con.execute("SELECT business_line, label FROM predictions").df()
    expected = log.groupby("business_line")["label"].value_counts(normalize=True)
    got = mix.set_index(["business_line", "label"])["share"]
    assert got.sum() == pytest.approx(log["business_line"].nunique())
    for (line, label), share in expected.items():
        assert got[(line, label)] == pytest.approx(share)
