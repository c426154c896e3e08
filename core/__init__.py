"""MMS core: store, registry, training, prediction, sampling, feedback, statistics."""
