"""Krippendorff's alpha against the worked examples of Krippendorff (2011)."""

from __future__ import annotations

import pytest

from labelops.quality.agreement import Agreement, krippendorff_alpha


def alpha3(result: Agreement) -> float:
    assert result.alpha is not None
    return round(result.alpha, 3)


# "Computing Krippendorff's Alpha-Reliability" (2011), section C: 4 observers, 12 units,
# missing values as None. Published: nominal 0.743, ordinal 0.815 (interval 0.849).
RELIABILITY_DATA = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}
TRIPLES = [
    (f"unit{u}", coder, v)
    for coder, row in RELIABILITY_DATA.items()
    for u, v in enumerate(row, start=1)
    if v is not None
]


def test_nominal_worked_example():
    result = krippendorff_alpha(TRIPLES, "nominal")
    assert alpha3(result) == 0.743
    # Unit 12 has a single value and is not pairable.
    assert (result.items, result.labels, result.values) == (11, 40, 5)


def test_ordinal_worked_example():
    assert alpha3(krippendorff_alpha(TRIPLES, "ordinal")) == 0.815


def test_two_coders_binary_example():
    # Section A: two observers, ten units, binary values: alpha = 0.095.
    a = [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    b = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    triples = [(u, "A", v) for u, v in enumerate(a)] + [(u, "B", v) for u, v in enumerate(b)]
    assert alpha3(krippendorff_alpha(triples)) == 0.095


def test_string_values_and_explicit_order():
    names = {1: "awful", 2: "bad", 3: "ok", 4: "good", 5: "great"}
    order = ["awful", "bad", "ok", "good", "great"]
    named = [(u, c, names[v]) for u, c, v in TRIPLES]
    assert alpha3(krippendorff_alpha(named, "nominal")) == 0.743
    assert alpha3(krippendorff_alpha(named, "ordinal", value_order=order)) == 0.815
    # Alphabetical order is a different ordinal scale, so a different alpha.
    assert alpha3(krippendorff_alpha(named, "ordinal")) != 0.815


def test_perfect_and_undefined_agreement():
    perfect = [(u, c, u % 2) for u in range(10) for c in ("A", "B")]
    assert krippendorff_alpha(perfect).alpha == pytest.approx(1.0)
    one_value = [(u, c, "x") for u in range(5) for c in ("A", "B")]
    assert krippendorff_alpha(one_value).alpha is None
    assert krippendorff_alpha([]).alpha is None
    assert krippendorff_alpha([(1, "A", 0), (2, "A", 1)]).alpha is None  # nothing pairable


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="twice"):
        krippendorff_alpha([(1, "A", 0), (1, "A", 1), (1, "B", 0)])
    with pytest.raises(ValueError, match="level='interval'"):
        krippendorff_alpha(TRIPLES, "interval")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="value_order"):
        krippendorff_alpha(TRIPLES, "ordinal", value_order=[1, 2, 3])
