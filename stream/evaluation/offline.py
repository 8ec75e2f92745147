"""Offline reference features for the UCI Online Retail file, computed without the operators.

This is the yardstick the streaming features are tested against: it reads the raw CSV itself
(its own invoice grouping, integer pennies) and evaluates each feature's formula directly over
the customer's whole history with numpy, so a bug in the event reader or in the incremental
updates shows up as a difference.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import numpy.typing as npt

from stream.feeds.history import open_text

DAY_MS = 86_400_000
WINDOW_DAYS = (7, 30, 90)


@dataclass(frozen=True, slots=True)
class CustomerHistory:
    purchase_ms: npt.NDArray[np.int64]
    purchase_cents: npt.NDArray[np.int64]
    cancel_ms: npt.NDArray[np.int64]


def read_online_retail(path: Path) -> dict[str, CustomerHistory]:
    """Each known customer's purchase invoices (time, pennies) and cancellation times."""
    with open_text(path) as handle:
        rows = [r for r in csv.DictReader(handle) if r["CustomerID"].strip()]
    # numpy parses "YYYY-MM-DD HH:MM:SS" as UTC: an independent path from the event reader's.
    times = np.array([r["InvoiceDate"] for r in rows], dtype="datetime64[ms]").astype(np.int64)
    lines: dict[str, list[tuple[int, Decimal]]] = defaultdict(list)
    owner: dict[str, str] = {}
    for row, at_ms in zip(rows, times.tolist(), strict=True):
        invoice = row["InvoiceNo"]
        quantity, price = Decimal(row["Quantity"]), Decimal(row["UnitPrice"])
        if invoice.startswith("C") or (quantity > 0 and price > 0):
            lines[invoice].append((at_ms, quantity * price))
            owner[invoice] = row["CustomerID"].strip()
    purchases: dict[str, list[tuple[int, int]]] = defaultdict(list)
    cancels: dict[str, list[int]] = defaultdict(list)
    for invoice, invoice_lines in lines.items():
        first_ms = min(ms for ms, _ in invoice_lines)
        if invoice.startswith("C"):
            cancels[owner[invoice]].append(first_ms)
        else:
            total = sum((value for _, value in invoice_lines), Decimal(0))
            pennies = int((total * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
            purchases[owner[invoice]].append((first_ms, pennies))
    return {
        customer: CustomerHistory(
            purchase_ms=np.array([ms for ms, _ in purchases[customer]], dtype=np.int64),
            purchase_cents=np.array([c for _, c in purchases[customer]], dtype=np.int64),
            cancel_ms=np.array(cancels[customer], dtype=np.int64),
        )
        for customer in set(purchases) | set(cancels)
    }


def reference_features(history: CustomerHistory, at_ms: int) -> dict[str, float]:
    """The documented formulas (``operators/features.py``) applied to the full history."""
    every_ms = np.concatenate([history.purchase_ms, history.cancel_ms])
    bought = history.purchase_ms
    tenure = (at_ms - int(every_ms.min())) / DAY_MS
    out = {
        "recency_days": (at_ms - int(bought.max())) / DAY_MS if bought.size else tenure,
        "frequency": float(bought.size),
        "monetary_cents": float(history.purchase_cents.sum()),
        "tenure_days": tenure,
        "inactive_days": (at_ms - int(every_ms.max())) / DAY_MS,
        "cancellations": float(history.cancel_ms.size),
        "events": float(every_ms.size),
    }
    age_days = (at_ms - bought) / DAY_MS
    for days in WINDOW_DAYS:
        weights = np.exp(-age_days / days)
        out[f"purchases_{days}d"] = float(weights.sum())
        out[f"spend_{days}d"] = float((weights * history.purchase_cents / 100).sum())
    return out
