"""A small graded store for the ordinal tests: urgency 低 < 中 < 高 of short support messages that
the tests write themselves, on two business lines, with a trained and active version 1, logged
predictions over two weeks, and some labels. The second week of 售后 is more urgent (drift)."""
import shutil

import numpy as np
import pandas as pd
import pytest

from core import feedback, imports, predict, registry, train
from conftest import copy_store

GRADED = "紧急程度"
GRADES = ["低", "中", "高"]
END = pd.Timestamp("2026-11-02")
PHRASES = {
    "低": ["有空再看", "不着急", "随便问问", "顺便说一下", "以后再说", "方便时回复"],
    "中": ["尽快处理", "这周内解决", "有点影响", "麻烦看看", "希望早点", "请跟进一下"],
    "高": ["马上处理", "非常紧急", "立刻回复", "严重故障", "完全无法使用", "损失很大"],
}
TOPICS = ["订单", "账户", "发票", "物流", "退款", "会员卡", "优惠券", "密码"]


def graded_texts(rng: np.random.Generator, grades: list[str]) -> list[str]:
    """One message per grade: a phrase of its grade, one of its grade or a neighbouring one, sometimes
    one of any grade, and a topic: graded, but not so plainly that the model is always sure."""
    out = []
    for grade in grades:
        i = GRADES.index(grade)
        near = GRADES[min(max(i + rng.choice([-1, 1]), 0), len(GRADES) - 1)]
        words = [rng.choice(PHRASES[grade]), rng.choice(PHRASES[grade if rng.random() < 0.4 else near])]
        if rng.random() < 0.3:
            words.append(rng.choice(PHRASES[rng.choice(GRADES)]))
        rng.shuffle(words)
        out.append(f"{rng.choice(TOPICS)}的问题，{'，'.join(words)}。")
    return out


def graded_frame(rng: np.random.Generator, n: int, weights=(0.4, 0.4, 0.2), lines=("客服", "售后")) -> pd.DataFrame:
    grades = list(rng.choice(GRADES, n, p=list(weights)))
    return pd.DataFrame({"text": graded_texts(rng, grades), "label": grades,
                         "business_line": list(rng.choice(list(lines), n))})


def build_graded(store, name: str = GRADED, labelled: int = 30) -> pd.DataFrame:
    """The graded model in `store` (see the module's docstring); returns the logged predictions."""
    rng = np.random.default_rng(15)
    registry.create_model(store, name, GRADES, "tester", task="ordinal", description="工单紧急程度")
    imports.import_frame(store, name, graded_frame(rng, 140), "test", "tester")
    imports.import_frame(store, name, graded_frame(rng, 300), "train", "tester")
    train.train_version(store, name, "tester", activate=True)
    logged = []
    for week, start in enumerate((END - pd.Timedelta(days=14), END - pd.Timedelta(days=7))):
        for line in ("客服", "售后"):
            weights = (0.05, 0.25, 0.7) if (week, line) == (1, "售后") else (0.4, 0.4, 0.2)
            frame = graded_frame(rng, 80, weights, lines=(line,))
            at = [start + pd.Timedelta(hours=int(h)) for h in rng.integers(0, 24 * 7, len(frame))]
            logged.append(predict.predict_texts(store, name, frame["text"].tolist(), "tester",
                                                business_line=line, created_at=at).assign(truth=frame["label"].values))
    out = pd.concat(logged, ignore_index=True)
    if labelled:
        chosen = out.iloc[:labelled]
        feedback.record_labels(store, name, pd.DataFrame({"prediction_id": chosen["prediction_id"],
                                                          "label": chosen["truth"]}), "tester")
    return out


@pytest.fixture(scope="session")
def _graded_template(_seeded_template, tmp_path_factory):
    """The seeded demo store (model 评论情感) with the graded model beside it, built once."""
    folder = tmp_path_factory.mktemp("graded") / "store"
    template = copy_store(_seeded_template, folder)
    build_graded(template)
    return template


@pytest.fixture
def graded_store(_graded_template, tmp_path):
    """A copy of the seeded store with the graded model 紧急程度 (see the module's docstring)."""
    from core.store import Store

    folder = tmp_path / "graded"
    shutil.copytree(_graded_template.path.parent, folder)
    return Store(folder / _graded_template.path.name)


STARS = ["一星", "二星", "三星", "四星", "五星"]
STAR_CUES = [["完全不能用", "气死我了", "垃圾到家", "退钱", "再也不买"],
             ["不太满意", "有不少问题", "失望", "做工粗糙", "不值这个价"],
             ["一般般", "还行吧", "中规中矩", "凑合用", "说不上好坏"],
             ["挺不错", "比较满意", "值得买", "用着顺手", "小瑕疵不影响"],
             ["非常满意", "超出预期", "完美", "强烈推荐", "太喜欢了"]]
STAR_THINGS = ["耳机", "台灯", "背包", "水杯", "键盘", "酒店", "外卖", "快递", "电影", "小说"]
UNEVEN = (0.05, 0.05, 0.2, 0.4, 0.3)  # the shares of public star ratings: few low grades


def star_reviews(seed: int, n: int, shares=UNEVEN) -> pd.DataFrame:
    """`n` reviews graded 一星..五星 in `shares`: each worded like its own grade half the time, else
    like a grade one or two off, with words of no grade around: graded, noisily, as real ratings are."""
    rng = np.random.default_rng(seed)
    grade = rng.choice(5, n, p=list(shares))
    worded = np.clip(grade + rng.choice([0, -1, 1, -2, 2], n, p=[0.45, 0.2, 0.2, 0.075, 0.075]), 0, 4)
    second = np.clip(grade + rng.choice([0, -1, 1, -2, 2], n, p=[0.45, 0.2, 0.2, 0.075, 0.075]), 0, 4)
    texts = [f"{rng.choice(STAR_THINGS)}{rng.choice(TOPICS)}，{rng.choice(STAR_CUES[w])}，"
             f"{rng.choice(STAR_CUES[v])}，{'，'.join(rng.choice(STAR_THINGS + TOPICS, 2))}"
             for w, v in zip(worded, second)]
    return pd.DataFrame({"text": texts, "label": [STARS[g] for g in grade],
                         "business_line": list(rng.choice(["电商", "本地"], n))})
