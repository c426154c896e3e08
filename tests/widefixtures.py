"""A graded model as a new user met it on the Monitor: numeric grades 1 < 2 < 3, fourteen business
lines, three complete weeks of predictions and a week in progress that holds seven. Built beside
the seeded demo model by the Monitor's browser tests (and by a screenshot script)."""
import numpy as np
import pandas as pd

from core import feedback, imports, predict, registry, train
from gradedfixtures import GRADES, graded_frame

WIDE = "满意度"
NUMERIC = ["1", "2", "3"]
LINES = ["电商", "酒店", "图书", "数码", "母婴", "综合", "外卖", "出行", "金融", "教育", "医疗", "游戏", "家居", "汽车"]


def numeric(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(label=frame["label"].map(dict(zip(GRADES, NUMERIC))))


def build_wide(store, now: pd.Timestamp | None = None) -> None:
    """The model WIDE in `store`: trained, active, with its predictions logged; `now` sets the
    running week (the clock's week by default, as the page reads it)."""
    rng = np.random.default_rng(22)
    now = pd.Timestamp.now() if now is None else pd.Timestamp(now)
    monday = (now - pd.Timedelta(days=now.day_of_week)).normalize()
    registry.create_model(store, WIDE, NUMERIC, "tester", task="ordinal", description="满意度 1-3")
    imports.import_frame(store, WIDE, numeric(graded_frame(rng, 120, lines=LINES)), "test", "tester")
    imports.import_frame(store, WIDE, numeric(graded_frame(rng, 300, lines=LINES)), "train", "tester")
    train.train_version(store, WIDE, "tester", activate=True)
    logged = []
    for week in (3, 2, 1):
        frame = graded_frame(rng, 14 * 12, lines=LINES)
        at = [monday - pd.Timedelta(weeks=week) + pd.Timedelta(hours=int(h)) for h in rng.integers(0, 24 * 7, len(frame))]
        logged.append(predict.predict_texts(store, WIDE, frame["text"].tolist(), "tester",
                                            business_line=frame["business_line"].tolist(), created_at=at)
                      .assign(truth=numeric(frame)["label"].values))
    running = graded_frame(rng, 7, lines=LINES[:3])
    at = [min(monday + pd.Timedelta(minutes=10 * i), now) for i in range(len(running))]
    logged.append(predict.predict_texts(store, WIDE, running["text"].tolist(), "tester",
                                        business_line=running["business_line"].tolist(), created_at=at)
                  .assign(truth=numeric(running)["label"].values))
    out = pd.concat(logged, ignore_index=True).iloc[::9]
    feedback.record_labels(store, WIDE, pd.DataFrame({"prediction_id": out["prediction_id"], "label": out["truth"]}),
                           "tester")
