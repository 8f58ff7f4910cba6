"""Release receipt grading, as synapse-channel 0.99.38 grades it (docs/protocol.md §3.2).

The grade is advisory evidence *quality*: the hub cannot check caller-supplied strings, so the
best a release frame can earn is `unverified`, never `supported`.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from marrow_tui.core.receipts import (
    FRESHNESS_WINDOW_SECONDS,
    build_receipt,
    grade_evidence,
    receipt_has_evidence,
    receipt_note,
)

from tests.support.hub import Hub

POSITIVE = "positive evidence present"
NO_POSITIVE = "no positive evidence, artifact, changed file, generated artifact, or approval"


def grade(freshness: object = None, **lists: list[str]) -> tuple[str, list[str]]:
    return grade_evidence(lists, freshness)


def test_known_failures_degrade_whatever_else_is_there() -> None:
    assert grade(0, evidence=["pytest ok"], known_failures=["flaky"]) == (
        "degraded", ["known failures declared", POSITIVE])
    assert grade(None, known_failures=["flaky"]) == (
        "degraded", ["known failures declared", NO_POSITIVE])


def test_no_positive_evidence_is_unsupported_even_when_fresh() -> None:
    assert grade() == ("unsupported", [NO_POSITIVE])
    assert grade(5) == ("unsupported", [NO_POSITIVE])


@pytest.mark.parametrize("field", ["evidence", "artifacts", "changed_files",
                                   "generated_artifacts", "approvals"])
def test_each_positive_field_counts_as_evidence(field: str) -> None:
    assert grade(10, **{field: ["x"]}) == (
        "unverified", [POSITIVE, "fresh evidence present but unverified"])


@pytest.mark.parametrize("freshness", [None, "soon", True, [], math.nan, math.inf])
def test_positive_evidence_without_a_numeric_age_needs_freshness(freshness: object) -> None:
    assert grade(freshness, evidence=["pytest ok"]) == (
        "needs_freshness", [POSITIVE, "freshness_seconds missing"])


def test_the_stale_boundary_is_strictly_over_an_hour() -> None:
    assert FRESHNESS_WINDOW_SECONDS == 3600.0
    fresh = ("unverified", [POSITIVE, "fresh evidence present but unverified"])
    stale = ("stale", [POSITIVE, "evidence age exceeds 3600 seconds"])
    assert grade(3600, evidence=["e"]) == fresh
    assert grade(3600.5, evidence=["e"]) == stale
    assert grade("7200", evidence=["e"]) == stale
    assert grade(0, evidence=["e"]) == fresh
    assert grade(-3, evidence=["e"]) == fresh


def receipt(**frame: Any) -> dict[str, Any]:
    return build_receipt(frame, "T1", "demo/bob")


def test_receipt_echoes_reasons_and_a_numeric_freshness() -> None:
    r = receipt(evidence=["pytest ok"], changed_files=["src/auth.py"], freshness_seconds=12,
                confidence=0.9)
    assert r == {
        "task_id": "T1", "owner": "demo/bob", "released": True,
        "evidence": ["pytest ok"], "artifacts": [], "known_failures": [],
        "changed_files": ["src/auth.py"], "generated_artifacts": [], "approvals": [],
        "epistemic_status": "unverified",
        "epistemic_reasons": [POSITIVE, "fresh evidence present but unverified"],
        "confidence": "0.9", "freshness_seconds": 12.0,
    }
    assert receipt(evidence=["e"], freshness_seconds="4000")["freshness_seconds"] == 4000.0
    assert receipt(evidence=["e"], freshness_seconds=-3)["freshness_seconds"] == 0.0
    for unusable in (None, "soon", True, math.nan, math.inf):
        assert "freshness_seconds" not in receipt(evidence=["e"], freshness_seconds=unusable)


def test_receipt_lists_are_cleaned_and_bounded() -> None:
    r = receipt(evidence="one line", artifacts=["  a  ", "", "   ", 7],
                approvals=["x" * 600] + ["y"] * 60, known_failures={"not": "a list"})
    assert r["evidence"] == ["one line"]
    assert r["artifacts"] == ["a", "7"]
    assert r["approvals"][0] == "x" * 500 and len(r["approvals"]) == 50
    assert r["known_failures"] == []
    assert "confidence" not in receipt(confidence="  ")
    assert "confidence" not in receipt(confidence=None)


def test_only_a_receipt_with_something_in_it_gets_a_note() -> None:
    assert not receipt_has_evidence(receipt())
    assert receipt_has_evidence(receipt(known_failures=["flaky"]))
    assert receipt_has_evidence(receipt(confidence="high"))
    assert receipt_has_evidence(receipt(freshness_seconds=0))
    note = receipt_note(receipt(evidence=["pytest ok", "ruff ok"], freshness_seconds=30,
                                confidence="high"))
    assert note == ("release receipt: evidence=pytest ok, ruff ok; confidence=high; "
                    "freshness_seconds=30.0; epistemic_status=unverified; "
                    f"epistemic_reasons={POSITIVE}, fresh evidence present but unverified")


async def test_release_with_evidence_is_graded_and_posts_an_assessment(hub: Hub) -> None:
    bob = await hub.agent("demo/bob")
    await bob.request(("claim_granted",), type="claim", task_id="T1", paths=["src/auth.py"])
    done = await bob.request(("release_granted",), type="release", task_id="T1",
                             evidence=["pytest ok"], changed_files=["src/auth.py"],
                             freshness_seconds=0.0)
    r = done["receipt"]
    assert r["epistemic_status"] == "unverified" and r["freshness_seconds"] == 0.0
    assert r["epistemic_reasons"] == [POSITIVE, "fresh evidence present but unverified"]
    posted = await bob.until("ledger_progress_posted")
    note = posted["note"]
    assert posted["payload"] == "Release receipt from demo/bob"
    assert (note["task_id"], note["author"], note["kind"]) == ("T1", "demo/bob", "assessment")
    assert note["text"] == receipt_note(r)
    assert hub.runtime.state.board.progress.for_task("T1")[-1]["kind"] == "assessment"


async def test_bare_release_posts_no_assessment(hub: Hub) -> None:
    bob = await hub.agent("demo/bob")
    await bob.request(("claim_granted",), type="claim", task_id="T1", paths=["a"])
    done = await bob.request(("release_granted",), type="release", task_id="T1")
    assert done["receipt"]["epistemic_status"] == "unsupported"
    assert done["receipt"]["epistemic_reasons"] == [NO_POSITIVE]
    # The hub answers frames in order: the who reply comes after anything the release sent.
    who = await bob.request(("who_snapshot",), type="who_request")
    assert who and not [f for f in bob.seen if f.get("type") == "ledger_progress_posted"]


async def test_a_replayed_keyed_release_posts_no_second_assessment(hub: Hub) -> None:
    bob = await hub.agent("demo/bob")
    await bob.request(("claim_granted",), type="claim", task_id="T1", paths=["a"])
    frame = {"type": "release", "task_id": "T1", "idem_key": "k1", "evidence": ["pytest ok"]}
    first = await bob.request(("release_granted",), **frame)
    await bob.until("ledger_progress_posted")
    again = await bob.request(("release_granted",), **frame)
    assert again == first
    await bob.request(("who_snapshot",), type="who_request")
    assert len([f for f in bob.seen if f.get("type") == "ledger_progress_posted"]) == 1
    assert len(hub.runtime.state.board.progress.for_task("T1")) == 1
