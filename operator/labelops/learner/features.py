"""Feature building: what the model sees of an item, as scikit-learn transformers.

Texts (classification, rating) become word and character n-gram TF-IDF: characters catch
what words miss in short, misspelled messages ("FREE!!", "txt 87121"). A pairwise item
becomes TF-IDF of response A minus TF-IDF of response B, plus the difference of their log
lengths: a linear model on a difference is antisymmetric, so swapping the responses swaps
the preference, and the prompt (the same on both sides) cancels out, which is why it is
not a feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

Pair = tuple[str, str]  # (response A text, response B text)


def text_vectorizer() -> FeatureUnion:
    return FeatureUnion(
        [
            ("words", TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1)),
            (
                "characters",
                TfidfVectorizer(sublinear_tf=True, analyzer="char_wb", ngram_range=(1, 4)),
            ),
        ]
    )


class PairDifference(BaseEstimator, TransformerMixin):
    """(A, B) pairs -> [tfidf(A) - tfidf(B), log1p(words A) - log1p(words B)]."""

    def fit(self, pairs: Sequence[Pair], y: Any = None) -> PairDifference:
        self.vectorizer_ = text_vectorizer()
        self.vectorizer_.fit([text for pair in pairs for text in pair])
        return self

    def transform(self, pairs: Sequence[Pair]) -> sp.csr_matrix:
        first = self.vectorizer_.transform([a for a, _ in pairs])
        second = self.vectorizer_.transform([b for _, b in pairs])
        lengths = np.array(
            [[np.log1p(len(a.split())) - np.log1p(len(b.split()))] for a, b in pairs]
        )
        return sp.hstack([first - second, sp.csr_matrix(lengths)], format="csr")
