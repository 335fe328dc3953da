"""report.html: every section from report.json's dict, every value escaped, nothing fetched.

The page is read back with the standard library's HTML parser, so the checks are on the
document a browser builds, not on substrings of the renderer's own output.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelwatch.report_html import CONTENT_SECURITY_POLICY, MAX_INVALID_ROWS_SHOWN, render_report_html
from tests.html_page import Page

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def numeric_detail(name: str, psi: float, drifted: bool) -> dict[str, Any]:
    return {
        "name": name,
        "type": "numeric",
        "test": "ks",
        "rows": 1000,
        "missing_rate": 0.012,
        "baseline_missing_rate": 0.0,
        "missing_bin_rate": 0.012,
        "baseline_missing_bin_rate": 0.0,
        "psi": psi,
        "statistic": 0.4,
        "p_value": 1e-20,
        "p_value_adjusted": 1e-19,
        "drifted": drifted,
        "edges": [10.0, 20.0, 30.0],
        "proportions": [0.1, 0.2, 0.3, 0.4],
        "baseline_proportions": [0.25, 0.25, 0.25, 0.25],
    }


OK_REPORT: dict[str, Any] = {
    "status": "ok",
    "batch": {"bucket": "b", "key": "incoming/batch-09.csv", "version_id": "v1", "etag": "e"},
    "model": {"name": "churn-classifier", "version": "7"},
    "processed_at": "2026-11-30T22:00:05+00:00",
    "event_time": "2026-11-30T22:00:00+00:00",
    "uploaded_at": "2026-11-30T22:00:01+00:00",
    "event_time_source": "batch-time metadata",
    "notes": [],
    "rows": 1000,
    "rows_scored": 998,
    "rows_invalid": 2,
    "labeled_rows": 931,
    "label_coverage": 0.933,
    "metrics": {"ErrorRate": 0.4006, "Accuracy": 0.5994},
    "live": True,
    "quality_metrics_withheld": None,
    "invalid_rows": [
        {"row": 3, "column": "tenure_months", "value": "n/a?", "reason": "expected a number"},
        {"row": 8, "column": "record_id", "value": None, "reason": "missing id"},
    ],
    "invalid_by_reason": {"expected a number": 1, "missing id": 1},
    "data_quality": [
        {"feature_name": "plan", "constraint_check_type": "unseen_categories", "description": "314 new"}
    ],
    "drift": {
        "status": "ok",
        "threshold": 0.2,
        "significance_level": 0.05,
        "adjustment": "bonferroni",
        "features": [
            numeric_detail("monthly_charges", 1.77, True),
            {
                "name": "plan",
                "type": "categorical",
                "test": "chi_square",
                "psi": 0.01,
                "statistic": 2.0,
                "p_value_adjusted": 1.0,
                "drifted": False,
                "missing_rate": 0.0,
                "baseline_missing_rate": 0.0,
                "categories": ["basic", "premium", "__other__", "__unseen__"],
                "proportions": [0.5, 0.5, 0.0, 0.0],
                "baseline_proportions": [0.5, 0.5, 0.0, 0.0],
            },
        ],
        "prediction": {
            "basis": "positive_probability",
            "psi": 0.87,
            "p_value": 1e-70,
            "drifted": True,
            "positive_probability": numeric_detail("positive_probability", 0.87, True),
        },
    },
    "outputs": {"predictions": "s3://b/results/batch-09.csv/predictions.csv.gz"},
    "reference": {
        "metrics": {"ErrorRate": 0.118, "Accuracy": 0.882},
        "quality_alarm": {"metric": "ErrorRate", "threshold": 0.2, "comparison": "GreaterThanThreshold"},
    },
    "metrics_published": ["ErrorRate"],
    "timings_ms": {"total_ms": 749.2},
}

REJECTED_REPORT: dict[str, Any] = {
    "status": "rejected",
    "batch": {"bucket": "b", "key": "incoming/broken.parquet", "version_id": "", "etag": ""},
    "model": {"name": "churn-classifier", "version": "7"},
    "processed_at": "2026-11-30T22:00:05+00:00",
    "event_time": "2026-11-30T22:00:00+00:00",
    "uploaded_at": "2026-11-30T22:00:01+00:00",
    "reason": "batch file 'incoming/broken.parquet' is truncated: ... upload the whole file again",
    "code": "truncated_parquet",
    "details": {},
    "metrics": {},
    "metrics_published": ["BatchesRejected"],
    "timings_ms": {},
}


def drift_rows(page: Page) -> int:
    """Rows of the drift table: its body rows each hold one distribution drawing."""
    return len([svg for svg in page.tags("svg") if "distribution" in (svg.get("class") or "")])


def test_an_ok_report_shows_status_metrics_against_reference_and_threshold_and_the_drift_table():
    page = Page(render_report_html(OK_REPORT))
    assert page.title == "modelwatch ok: incoming/batch-09.csv"
    text = page.all_text
    assert "0.4006" in text and "0.1180" in text and "+0.2826" in text
    assert "over 0.2000" in text  # ErrorRate against QualityAlarm's threshold
    # One drawing per feature and one for the prediction, each with a bar per bin and side
    assert drift_rows(page) == 3
    assert len(page.tags("rect")) == 2 * (4 + 1) + 2 * 4 + 2 * (4 + 1)  # numeric ones add a missing bin
    assert "1 of 2 features drifted: monthly_charges" in text
    assert "314 new" in text and "expected a number" in text and "n/a?" in text


def test_links_are_relative_to_the_reports_own_folder():
    page = Page(render_report_html(OK_REPORT))
    assert [anchor["href"] for anchor in page.tags("a")] == ["predictions.csv.gz", "report.json"]
    rejected = Page(render_report_html(REJECTED_REPORT))
    assert [anchor["href"] for anchor in rejected.tags("a")] == ["report.json"]  # no predictions were written


def test_the_page_fetches_nothing_and_forbids_scripts():
    page = Page(render_report_html(OK_REPORT))
    assert not page.tags("script") and not page.tags("link") and not page.tags("img")
    assert not [attributes for _, attributes in page.elements if "src" in attributes]
    (policy,) = [meta for meta in page.tags("meta") if meta.get("http-equiv") == "Content-Security-Policy"]
    assert policy["content"] == CONTENT_SECURITY_POLICY == "default-src 'none'; style-src 'unsafe-inline'"


def test_a_rejected_report_leads_with_its_reason():
    page = Page(render_report_html(REJECTED_REPORT))
    assert page.title == "modelwatch rejected: incoming/broken.parquet"
    assert "truncated_parquet" in page.all_text
    assert "upload the whole file again" in page.all_text
    assert drift_rows(page) == 0


def test_invalid_rows_of_a_rejection_are_listed_and_capped():
    report = copy.deepcopy(REJECTED_REPORT)
    listed = [
        {"row": i, "column": "x", "value": str(i), "reason": "expected a number"} for i in range(1, 101)
    ]
    report["details"] = {"invalid_rows": listed, "invalid_by_reason": {"expected a number": 400}}
    page = Page(render_report_html(report))
    assert "400 invalid row(s)" in page.all_text
    invalid_table = [td for td in page.text if td == "expected a number"]
    assert len(invalid_table) == MAX_INVALID_ROWS_SHOWN + 1  # the rows, and the by-reason table


@pytest.mark.parametrize(
    "place",
    ["key", "reason", "cell", "feature", "finding", "note", "estimate"],
)
def test_every_user_value_is_escaped(place):
    report = copy.deepcopy(OK_REPORT if place != "reason" else REJECTED_REPORT)
    if place == "key":
        report["batch"]["key"] = f"incoming/{HOSTILE}.csv"
    elif place == "reason":
        report["reason"] = f"column {HOSTILE!r} is missing"
    elif place == "cell":
        report["invalid_rows"][0]["value"] = HOSTILE
    elif place == "feature":
        report["drift"]["features"][1]["categories"][0] = HOSTILE
        report["drift"]["features"][1]["name"] = HOSTILE
    elif place == "finding":
        report["data_quality"][0]["description"] = HOSTILE
    elif place == "note":
        report["notes"] = [HOSTILE]
    else:
        report["estimate"] = {HOSTILE: HOSTILE}
    page = Page(render_report_html(report))
    assert not page.tags("script") and not page.tags("img")
    assert HOSTILE in page.all_text or HOSTILE in page.title or place == "feature"
    if place == "feature":  # the category is a bar's tooltip, still text
        assert any(HOSTILE in piece for piece in page.text)


def test_an_estimate_key_is_rendered_whatever_its_shape():
    report = copy.deepcopy(OK_REPORT)
    report["estimate"] = {"method": "CBPE", "metrics": {"Accuracy": 0.93}, "realized": {"Accuracy": 0.91}}
    page = Page(render_report_html(report))
    assert [section["id"] for section in page.tags("h2")][:2] == ["metrics", "estimate"]
    assert "metrics.Accuracy" in page.all_text and "CBPE" in page.all_text
    assert "estimate" not in [section.get("id") for section in Page(render_report_html(OK_REPORT)).tags("h2")]


def test_a_report_without_a_threshold_or_reference_still_renders():
    report = copy.deepcopy(OK_REPORT)
    del report["reference"]
    page = Page(render_report_html(report))
    assert "over 0.2000" not in page.all_text and "0.4006" in page.all_text
