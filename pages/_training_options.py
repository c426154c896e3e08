"""Train page: how a full retrain of a model in the default mode (estimator "auto") chooses its
config, re-selected by cross-validation or the active version's choice refitted (issue 25)."""
from __future__ import annotations

import streamlit as st

from core import estimators, registry, train

RESELECT, REFIT = "Re-select by cross-validation", "Refit the active version's choice (no search)"


def full_retrain_choice(model: registry.Model, plan: train.TrainingPlan) -> bool | None:
    """The owner's choice for a Full retrain, as `train.train_version`'s `reselect`: None (re-select,
    the default) or False (refit). A pinned config, or a model with no active version, has nothing
    to choose: what a full retrain does is said in a caption."""
    if estimators.ModelConfig.from_dict(model.model_config).pinned or plan.active_version is None:
        if plan.full_retrain:
            st.caption(f"Full retrain {plan.full_retrain}.")
        return None
    picked = st.radio("Full retrain", (RESELECT, REFIT), key="train_reselect", horizontal=True,
                      help=f"A full retrain {plan.full_retrain}. Re-selecting takes most of a full retrain's time.")
    return False if picked == REFIT else None
