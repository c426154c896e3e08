"""The server's drift measuring (core.driftfill): every period's cells cached in the background, so
that no Monitor render waits for them, and a render of a view being measured spends nothing on it."""
from core import drift, driftfill, slices, stats

MODEL = "评论情感"


def pending(store, by: str) -> int:
    by_line = stats.stats_by_line_and_period(store, MODEL, by)
    return drift.drift_by_line_and_period(store, MODEL, by, by_line, budget_seconds=0).pending


def test_a_pass_caches_every_period_and_runs_again_only_after_a_change(seeded_store, monkeypatch):
    assert pending(seeded_store, "day") > 0
    filler = driftfill.DriftFiller(seeded_store, off_process=False)
    filler.once()
    assert [pending(seeded_store, by) for by in slices.PERIODS] == [0, 0, 0]
    assert not any(drift.measuring(seeded_store, MODEL, by) for by in slices.PERIODS)  # claims released
    passes = []
    monkeypatch.setattr(filler, "measure", lambda name, by: passes.append(by))
    filler.once()
    assert passes == []  # nothing changed in the store: nothing to look at
    from core import feedback

    feedback.set_guidelines(seeded_store, MODEL, "a change", "tester")
    filler.once()
    assert passes == list(driftfill.ORDER)


def test_views_waiting_for_a_pass_are_claimed_so_a_render_spends_nothing_on_them(seeded_store, monkeypatch):
    seen = {}
    filler = driftfill.DriftFiller(seeded_store, off_process=False)

    def measure(name, by):  # while measuring weeks, days and months are still claimed, waiting
        seen[by] = {b: drift.measuring(seeded_store, MODEL, b) for b in slices.PERIODS}

    monkeypatch.setattr(filler, "measure", measure)
    filler.once()
    assert seen["week"] == {"day": True, "week": True, "month": True}
    assert seen["month"] == {"day": False, "week": False, "month": True}
