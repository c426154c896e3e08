"""A real `streamlit run app.py` under 8 concurrent clients of one text: with the batcher and the lean
predict path in the way, every answer equals the answer the same text gets alone (no server, no batch),
and every answered prediction is logged."""
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

from core import demo, forward, predict
from core import store as db
from servers import post_json, start_server, stop_server, wait_ready

pytestmark = pytest.mark.stress

M = demo.MODEL
TEXTS = [f"第{i}条：{t}" for i in range(40) for t in ("质量很好，物流也快", "太差了，不会再买")]


def test_eight_clients_get_the_answers_alone_and_every_answer_is_logged(seeded_store, tmp_path):
    alone = predict.predict_texts(seeded_store, M, TEXTS, "tester", business_line="alone")
    expected = {row["text"]: (row["label"], row["p_正面"]) for row in alone.to_dict("records")}
    url, proc = start_server({"MMS_STORE": str(seeded_store.path)}, tmp_path / "server.log")
    try:
        wait_ready(url, proc, tmp_path / "server.log", ready=lambda: forward.find(seeded_store.path) is not None)
        path = f"{url}/api/models/{quote(M)}/predict"
        answers, lock = [], threading.Lock()

        def client(k: int) -> None:
            for i in range(k, len(TEXTS), 8):
                status, body = post_json(path, {"texts": [TEXTS[i]], "business_line": "stress"}, timeout=120)
                assert status == 200, body
                with lock:
                    answers.append((TEXTS[i], body["predictions"][0]))

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(client, range(8)))
        assert len(answers) == len(TEXTS)
        for text, answer in answers:
            assert (answer["label"], answer["probabilities"]["正面"]) == expected[text]
        ids = [a["prediction_id"] for _, a in answers]
    finally:
        stop_server(proc)
    with seeded_store.connect() as con:
        model_id = db.model_by_name(con, M)["model_id"]
        logged = set(db.predictions_by_id(con, model_id, ids)["prediction_id"].tolist())
    assert logged == set(ids) and len(ids) == len(set(ids))

