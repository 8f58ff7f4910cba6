"""Release receipts: the close-out evidence a `release` carries, and its advisory grade.

The grade is evidence *quality* as synapse-channel grades it (docs/protocol.md §3.2), never a
trust verdict: the hub cannot check caller-supplied strings, so the best a release frame can
earn is ``unverified``. ``supported`` belongs to a verifier that ran the checks itself.

Pure functions only: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

#: the repeated evidence fields of a release, in receipt order
RECEIPT_LISTS: Final = (
    "evidence",
    "artifacts",
    "known_failures",
    "changed_files",
    "generated_artifacts",
    "approvals",
)
#: the fields that count as positive evidence (everything but `known_failures`)
POSITIVE_LISTS: Final = ("evidence", "artifacts", "changed_files", "generated_artifacts",
                         "approvals")
MAX_ITEMS: Final = 50
MAX_ITEM_CHARS: Final = 500
#: evidence older than this (strictly) is `stale`
FRESHNESS_WINDOW_SECONDS: Final = 3600.0

REASON_FAILURES: Final = "known failures declared"
REASON_POSITIVE: Final = "positive evidence present"
REASON_NO_POSITIVE: Final = (
    "no positive evidence, artifact, changed file, generated artifact, or approval"
)
REASON_NO_FRESHNESS: Final = "freshness_seconds missing"
REASON_STALE: Final = "evidence age exceeds 3600 seconds"
REASON_FRESH: Final = "fresh evidence present but unverified"


def receipt_items(raw: object) -> list[str]:
    """One repeated field: a string is one item, a list its items; anything else is empty.

    Items are stringified and stripped, empty ones dropped, each cut to 500 characters, and at
    most 50 kept.
    """
    if isinstance(raw, str):
        values: list[Any] | tuple[Any, ...] = (raw,)
    elif isinstance(raw, (list, tuple)):
        values = raw
    else:
        return []
    items: list[str] = []
    for value in values:
        text = str(value).strip()
        if text:
            items.append(text[:MAX_ITEM_CHARS])
            if len(items) >= MAX_ITEMS:
                break
    return items


def evidence_age(raw: object) -> float | None:
    """`freshness_seconds` as a finite number of seconds, or None when it is not one.

    Numbers and numeric strings count; booleans, other types and NaN/infinity do not.
    """
    if raw is None or isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        return None
    try:
        age = float(raw)
    except (TypeError, ValueError, OverflowError):
        return None
    return age if math.isfinite(age) else None


def grade_evidence(lists: Mapping[str, list[str]], freshness_seconds: object
                   ) -> tuple[str, list[str]]:
    """The `epistemic_status` and `epistemic_reasons` for cleaned receipt lists.

    In order: declared `known_failures` → `degraded`; no positive evidence → `unsupported`;
    no numeric age → `needs_freshness`; older than an hour → `stale`; else `unverified`.
    """
    positive = any(lists.get(name) for name in POSITIVE_LISTS)
    reasons = [REASON_POSITIVE if positive else REASON_NO_POSITIVE]
    if lists.get("known_failures"):
        return "degraded", [REASON_FAILURES, *reasons]
    if not positive:
        return "unsupported", reasons
    age = evidence_age(freshness_seconds)
    if age is None:
        return "needs_freshness", [*reasons, REASON_NO_FRESHNESS]
    if age > FRESHNESS_WINDOW_SECONDS:
        return "stale", [*reasons, REASON_STALE]
    return "unverified", [*reasons, REASON_FRESH]


def build_receipt(frame: Mapping[str, Any], task_id: str, owner: str) -> dict[str, Any]:
    """The receipt a `release_granted` carries for the release request `frame`."""
    lists = {name: receipt_items(frame.get(name)) for name in RECEIPT_LISTS}
    status, reasons = grade_evidence(lists, frame.get("freshness_seconds"))
    receipt: dict[str, Any] = {"task_id": task_id, "owner": owner, "released": True, **lists,
                               "epistemic_status": status, "epistemic_reasons": reasons}
    confidence = frame.get("confidence")
    if confidence is not None and str(confidence).strip():
        receipt["confidence"] = str(confidence).strip()[:MAX_ITEM_CHARS]
    age = evidence_age(frame.get("freshness_seconds"))
    if age is not None:
        receipt["freshness_seconds"] = max(age, 0.0)
    return receipt


def receipt_has_evidence(receipt: Mapping[str, Any]) -> bool:
    """Whether the release said anything about its work (then the hub posts an assessment)."""
    return (any(receipt.get(name) for name in RECEIPT_LISTS)
            or bool(receipt.get("confidence")) or "freshness_seconds" in receipt)


def receipt_note(receipt: Mapping[str, Any]) -> str:
    """The text of the `assessment` progress note recording `receipt` on the board."""
    parts = [f"{name}={', '.join(receipt[name])}" for name in RECEIPT_LISTS if receipt.get(name)]
    if receipt.get("confidence"):
        parts.append(f"confidence={receipt['confidence']}")
    if "freshness_seconds" in receipt:
        parts.append(f"freshness_seconds={receipt['freshness_seconds']}")
    parts.append(f"epistemic_status={receipt['epistemic_status']}")
    parts.append(f"epistemic_reasons={', '.join(receipt['epistemic_reasons'])}")
    return "release receipt: " + "; ".join(parts)
