"""Prediction throughput end to end (tokenise, predict, log into the store) against bare jieba.lcut
over the same real review texts, in the same run.

    python bench/predict_throughput.py [--texts 20000]
"""
import argparse
import logging
import tempfile
import time

import jieba

from _common import header, record, timer
from core import demo, predict, workers
from core.store import Store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=20000)
    args = parser.parse_args()
    header("prediction throughput")
    reviews = demo.load_reviews()
    texts = (reviews["text"].tolist() * (args.texts // len(reviews) + 1))[:args.texts]
    chars = sum(map(len, texts))
    store = Store(tempfile.mkdtemp() + "/bench.duckdb")
    demo.build_store(store, n_train=4000, n_test=1000, n_traffic=0)
    predict.predict_texts(store, demo.MODEL, texts[:50], "bench")  # load the model, warm caches
    predict.predict_texts(store, demo.MODEL, texts[:2 * workers.MIN_ITEMS], "bench")  # start the workers
    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    rate = lambda t: len(texts) / t.seconds
    print(f"texts: {len(texts)} ({chars / len(texts):.0f} characters on average); three rounds, "
          f"each timing the three in turn (ratios are within a round)")
    ratios_one, ratios_both, ratios_cpu = [], [], []
    for round_ in range(1, 4):
        started = time.process_time()
        with timer() as bare:
            for t in texts:
                jieba.lcut(t)
        bare_cpu, started = time.process_time() - started, time.process_time()
        with timer() as one:
            predict.predict_texts(store, demo.MODEL, texts, "bench", business_line="bench", workers=1)
        # CPU seconds of this process (DuckDB's threads too): what the ratio is with a core to itself,
        # which other work on the machine moves much less than the wall-clock rates
        ratios_cpu.append(bare_cpu / (time.process_time() - started))
        with timer() as both:
            predict.predict_texts(store, demo.MODEL, texts, "bench", business_line="bench")
        ratios_one.append(rate(one) / rate(bare))
        ratios_both.append(rate(both) / rate(bare))
        print(f"round {round_}: bare jieba.lcut {rate(bare):6.0f} texts/s | predict + log, one process "
              f"{rate(one):6.0f} texts/s (ratio {ratios_one[-1]:.2f}; by CPU time {ratios_cpu[-1]:.2f}) | {workers.default_workers()} processes "
              f"{rate(both):6.0f} texts/s (ratio {ratios_both[-1]:.2f})")
    median = lambda xs: sorted(xs)[len(xs) // 2]
    record("one_process_ratio", median(ratios_one))
    record("one_process_cpu_ratio", median(ratios_cpu))
    record("all_cores_ratio", median(ratios_both))
    print(f"median ratio, one process:  {median(ratios_one):.2f} (target >= 0.85); by CPU time "
          f"{median(ratios_cpu):.2f}")
    print(f"median ratio, {workers.default_workers()} processes: {median(ratios_both):.2f} (target >= 1.6)")


if __name__ == "__main__":
    main()
