"""scikit-learn's estimator protocol for a classifier that wraps another (`estimator`): the parameters
of both for get_params/set_params (so grid search and clone reach the inner one), and the tags
scikit-learn's checks ask for. Plain Python, so the modules using it load without scikit-learn."""
from __future__ import annotations


class WrappedClassifier:
    """Mixin: a subclass names its own parameters in `_PARAMS`, `estimator` among them."""

    _PARAMS: tuple[str, ...] = ("estimator",)

    def get_params(self, deep: bool = True) -> dict:
        params = {key: getattr(self, key) for key in self._PARAMS}
        if deep and hasattr(self.estimator, "get_params"):
            params.update({f"estimator__{k}": v for k, v in self.estimator.get_params(deep=True).items()})
        return params

    def set_params(self, **params):
        nested = {k.split("__", 1)[1]: v for k, v in params.items() if k.startswith("estimator__")}
        for key in self._PARAMS:
            if key in params:
                setattr(self, key, params[key])
        if nested:
            self.estimator.set_params(**nested)
        return self

    def __sklearn_tags__(self):
        """What scikit-learn's checks ask of an estimator: a classifier of sparse or dense rows."""
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags(), input_tags=InputTags(sparse=True))
