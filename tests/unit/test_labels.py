from decimal import Decimal

import numpy as np
import pytest

from modelwatch.labels import LabelNormaliser


@pytest.mark.parametrize("raw", [1, 1.0, "1", " 1 ", "1.0", Decimal("1"), Decimal("1.00"), np.int64(1), True])
def test_numeric_classes_match_by_value(raw):
    assert LabelNormaliser([0, 1]).normalise(raw) == 1


def test_text_classes_match_by_text_and_unknown_labels_match_nothing():
    normaliser = LabelNormaliser(["churn", "stay"])
    assert normaliser.normalise("churn") == "churn"
    assert normaliser.normalise("other") is None
    assert normaliser.normalise(None) is None


def test_regression_actuals_become_floats():
    normaliser = LabelNormaliser(None)
    assert normaliser.normalise(Decimal("12.5")) == 12.5
    assert normaliser.normalise("abc") is None
    assert normaliser.normalise("nan") is None


@pytest.mark.parametrize("raw", [True, "true", "True", " TRUE ", 1, "1"])
def test_boolean_classes_match_their_text_and_numbers(raw):
    assert LabelNormaliser([False, True]).normalise(raw) is True


def test_text_classes_that_read_as_the_same_number_stay_distinct():
    normaliser = LabelNormaliser(["01", "1"])
    assert normaliser.normalise("01") == "01"
    assert normaliser.normalise("1") == "1"
    assert normaliser.normalise(1) is None  # ambiguous by value: no guess


def test_positive_label_written_as_text_finds_the_numeric_class():
    assert LabelNormaliser([0, 1]).normalise("1") == 1


@pytest.mark.parametrize(
    ("raw", "expected"), [("Yes", "yes"), ("No", "no"), ("YES", "yes"), (" yes ", "yes")]
)
def test_text_differing_only_by_case_or_spaces_matches_the_class(raw, expected):
    assert LabelNormaliser(["no", "yes"]).normalise(raw) == expected


def test_classes_differing_only_by_case_match_only_their_exact_text():
    normaliser = LabelNormaliser(["Yes", "yes", "no"])
    assert normaliser.normalise("Yes") == "Yes"
    assert normaliser.normalise(" yes") == "yes"
    assert normaliser.normalise("YES") is None  # either class could be meant: no guess
    assert normaliser.normalise("NO") == "no"  # "no" has no look-alike, so case still folds


def test_case_folding_leaves_unknown_labels_unknown():
    assert LabelNormaliser(["no", "yes"]).normalise("maybe") is None
