"""Chinese text preprocessing: normalisation and a jieba tokenizer configured per model.

A `Tokenizer` pickles as its config only; the jieba dictionary (with the model's new words) is
built once per process and per set of new words, so two models never share added words.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import asdict, dataclass

import jieba

from .errors import InvalidInput
from .workers import split_map

jieba.setLogLevel(logging.WARNING)

CUT_MODES = ("accurate", "full", "search")


@dataclass(frozen=True)
class PreprocessConfig:
    """How a model turns a text into tokens."""
    cut_mode: str = "accurate"        # jieba: accurate (lcut), full (cut_all), search (cut_for_search)
    hmm: bool = True                  # jieba's HMM for words not in the dictionary
    new_words: tuple[str, ...] = ()   # added to this model's jieba dictionary only
    stop_words: tuple[str, ...] = ()  # dropped after cutting
    fullwidth_to_halfwidth: bool = True
    lowercase: bool = True
    drop_punctuation: bool = True

    @classmethod
    def from_dict(cls, d: dict | None) -> "PreprocessConfig":
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidInput(f"unknown preprocessing setting(s): {', '.join(sorted(unknown))}")
        if d.get("cut_mode", "accurate") not in CUT_MODES:
            raise InvalidInput(f"cut_mode must be one of {', '.join(CUT_MODES)}, not {d['cut_mode']!r}")
        for key in ("hmm", "fullwidth_to_halfwidth", "lowercase", "drop_punctuation"):
            if key in d and not isinstance(d[key], bool):
                raise InvalidInput(f"{key} must be true or false, not {d[key]!r}")
        for key in ("new_words", "stop_words"):
            if key in d:
                d[key] = _word_list(key, d[key])
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["new_words"] = list(self.new_words)
        d["stop_words"] = list(self.stop_words)
        return d

    def fingerprint(self) -> str:
        """Identifies the tokens this config produces: the key of the token cache."""
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _word_list(key: str, words) -> tuple[str, ...]:
    """A list of words, or one string of words separated by commas or new lines; sorted, distinct."""
    if isinstance(words, str):
        words = words.replace("\n", ",").split(",")
    if not isinstance(words, (list, tuple)) or not all(isinstance(w, str) for w in words):
        raise InvalidInput(f"{key} must be a list of words, like [\"差评\", \"好评\"], not {words!r}")
    return tuple(sorted({w.strip() for w in words if w.strip()}))


def normalise(text: str, config: PreprocessConfig = PreprocessConfig()) -> str:
    """Full-width to half-width (NFKC) and lower case, as configured; whitespace collapsed."""
    if config.fullwidth_to_halfwidth:
        text = unicodedata.normalize("NFKC", text)
    if config.lowercase:
        text = text.lower()
    return " ".join(text.split())


_dictionaries: OrderedDict[tuple[str, ...], jieba.Tokenizer] = OrderedDict()
_dictionaries_lock = threading.Lock()
MAX_DICTIONARIES = 8  # each is ~56 MB; the Train page's live preview makes one per edit of new words


def _jieba_for(new_words: tuple[str, ...]) -> jieba.Tokenizer:
    with _dictionaries_lock:
        tk = _dictionaries.get(new_words)
        if tk is None:
            tk = jieba.Tokenizer()
            tk.initialize()
            for word in new_words:
                tk.add_word(word)
            _dictionaries[new_words] = tk
            while len(_dictionaries) > MAX_DICTIONARIES:
                _dictionaries.popitem(last=False)
        _dictionaries.move_to_end(new_words)
        return tk


_PUNCTUATION = re.compile(r"[\W_]+")  # no letter, digit or CJK character: punctuation, symbols, space


class Tokenizer:
    """Picklable callable: text -> list of tokens, following a PreprocessConfig."""

    def __init__(self, config: PreprocessConfig | dict | None = None):
        if not isinstance(config, PreprocessConfig):
            config = PreprocessConfig.from_dict(config)
        self.config = config
        self._stop = frozenset(config.stop_words)
        self._jieba = None

    def __getstate__(self):
        return {"config": self.config.to_dict()}

    def __setstate__(self, state):
        self.__init__(state["config"])

    def _cutter(self):
        if self._jieba is None:
            self._jieba = _jieba_for(self.config.new_words)
        return self._jieba

    def __call__(self, text: str) -> list[str]:
        return self.cut_normalised(normalise(text, self.config))

    def cut_normalised(self, text: str) -> list[str]:
        """Tokens of a text already passed through `normalise` with this config."""
        c = self.config
        jb = self._cutter()
        if c.cut_mode == "full":
            tokens = jb.lcut(text, cut_all=True, HMM=c.hmm)
        elif c.cut_mode == "search":
            tokens = jb.lcut_for_search(text, HMM=c.hmm)
        else:
            tokens = jb.lcut(text, HMM=c.hmm)
        stop, punct = self._stop, c.drop_punctuation
        return [t for t in tokens
                if t.strip() and t not in stop and not (punct and _PUNCTUATION.fullmatch(t))]

    def cut_many(self, texts, workers: int | None = 1) -> list[list[str]]:
        """Tokens of every text; a large batch may be split across `workers` processes."""
        if workers == 1:
            return [self(t) for t in texts]
        return split_map(_cut, list(texts), (self.config.to_dict(),), workers)


def _cut(texts: list[str], config: dict) -> list[list[str]]:
    return Tokenizer(config).cut_many(texts)


def preview(config: PreprocessConfig | dict | None, text: str) -> list[str]:
    """The tokens `text` becomes under `config` (for the Train page's live preview)."""
    return Tokenizer(config)(text)
