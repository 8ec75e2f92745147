"""History files as event streams, for ``segstream replay`` and ``segstream evaluate``.

Three inputs, each turned into events in the input schema (``event.schema.json``) and sorted
by event time (ties by event id), so a replay sees them as a live stream would have:

- JSON lines, one event per line, already in the schema;
- a transactions CSV described by a :class:`CsvMapping` (which columns hold the user, time,
  amount or quantity and price, the event type, the invoice); rows that share an invoice are
  one event whose amount is the sum of the rows', rounded to the cent (half up);
- presets: ``online-retail`` for the UCI Online Retail file (:data:`ONLINE_RETAIL`) and
  ``rees46`` for the REES46 clickstream export (:data:`REES46`).

The whole file is read into memory to sort it: fine for the history files this is meant for
(the UCI file is 540k lines); stream larger ones through Kafka with ``--kafka`` instead.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

CENT = Decimal("0.01")


class HistoryError(ValueError):
    """A history file that cannot be read as described (bad column, bad time format...)."""


@dataclass(frozen=True, slots=True)
class CsvMapping:
    """Which CSV columns make an event. Times without a zone are read as UTC.

    ``amount`` names a column holding the amount; otherwise ``quantity * price``. Rows of
    one ``invoice`` make one event. ``type`` names a column of event types; without it every
    row is ``default_type``, except invoices starting with ``cancel_prefix`` (``cancel``).
    Rows failing ``keep_positive`` (non-positive quantity or price) are left out of purchases.
    """

    user: str
    time: str
    amount: str | None = None
    quantity: str | None = None
    price: str | None = None
    type: str | None = None
    invoice: str | None = None
    time_format: str = "%Y-%m-%d %H:%M:%S"
    delimiter: str = ","
    category: str | None = None
    default_type: str = "purchase"
    cancel_prefix: str | None = None
    type_names: tuple[tuple[str, str], ...] = ()  # (file's name, schema's name) pairs


# UCI Online Retail: one purchase per invoice of a known customer, from its lines with
# quantity > 0 and price > 0, amount = sum(quantity * price) to the cent, at the invoice's
# first line time; one cancel per "C" invoice. Exact duplicate lines are kept (as the published
# totals do). InvoiceDate is UK local time and is read as UTC (no DST shift applied).
ONLINE_RETAIL = CsvMapping(
    user="CustomerID",
    time="InvoiceDate",
    quantity="Quantity",
    price="UnitPrice",
    invoice="InvoiceNo",
    cancel_prefix="C",
)
# REES46 "eCommerce behavior data from multi category store" (one row per event).
REES46 = CsvMapping(
    user="user_id",
    time="event_time",
    type="event_type",
    amount="price",
    category="category_code",
    time_format="%Y-%m-%d %H:%M:%S UTC",
    type_names=(("cart", "add_to_cart"),),
)
PRESETS = {"online-retail": ONLINE_RETAIL, "rees46": REES46}


def open_text(path: Path) -> TextIO:
    """Open a text file, gunzipping ``.gz`` transparently."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def read_history(path: Path, mapping: CsvMapping | None = None) -> list[dict[str, Any]]:
    """The file's events in event-time order: JSON lines if ``mapping`` is None, else CSV."""
    events = _read_json_lines(path) if mapping is None else _read_csv(path, mapping)
    events.sort(key=lambda e: (int(e["ts"]), str(e["event_id"])))
    return events


def _read_json_lines(path: Path) -> list[dict[str, Any]]:
    events = []
    with open_text(path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError as exc:
                raise HistoryError(f"{path}:{number}: not JSON ({exc})") from None
            if not isinstance(event, dict) or "ts" not in event or "event_id" not in event:
                raise HistoryError(f"{path}:{number}: not an event object with event_id and ts")
            if isinstance(event["ts"], str):
                event["ts"] = _parse_iso_ms(event["ts"], path, number)
            events.append(event)
    return events


@dataclass(slots=True)
class _Draft:
    """An event being assembled from the rows of one invoice."""

    event_id: str
    user_id: str
    type: str
    ts_ms: int
    cents: Decimal
    category: str


def _read_csv(path: Path, mapping: CsvMapping) -> list[dict[str, Any]]:
    drafts: dict[str, _Draft] = {}
    parsed_times: dict[str, int] = {}  # rows of one invoice repeat its time: parse it once
    with open_text(path) as handle:
        reader = csv.DictReader(handle, delimiter=mapping.delimiter)
        _check_columns(path, mapping, reader.fieldnames or [])
        for number, row in enumerate(reader, 2):
            user = (row[mapping.user] or "").strip()
            if not user:
                continue  # no customer: nothing to attribute the event to
            invoice = (row[mapping.invoice] or "").strip() if mapping.invoice else ""
            event_type = _row_type(row, mapping, invoice)
            value = _row_amount(row, mapping, event_type, path, number)
            if value is None:
                continue
            text = row[mapping.time]
            ts_ms = parsed_times.get(text)
            if ts_ms is None:
                ts_ms = parsed_times[text] = _parse_ms(text, mapping.time_format, path, number)
            event_id = invoice or f"{path.name}:{number}"
            draft = drafts.get(event_id)
            if draft is None:
                category = (row[mapping.category] or "").strip() if mapping.category else ""
                drafts[event_id] = _Draft(event_id, user, event_type, ts_ms, value, category)
            else:
                draft.ts_ms = min(draft.ts_ms, ts_ms)
                draft.cents += value
    return [_to_event(d) for d in drafts.values()]


def _check_columns(path: Path, mapping: CsvMapping, header: Sequence[str]) -> None:
    wanted = [
        mapping.user,
        mapping.time,
        mapping.amount,
        mapping.quantity,
        mapping.price,
        mapping.type,
        mapping.invoice,
        mapping.category,
    ]
    missing = [c for c in wanted if c is not None and c not in header]
    if missing:
        raise HistoryError(f"{path}: no column {', '.join(missing)} (columns: {', '.join(header)})")
    if (mapping.quantity is None) != (mapping.price is None):
        raise HistoryError("map both a quantity and a price column, or neither")


def _row_type(row: dict[str, str], mapping: CsvMapping, invoice: str) -> str:
    if mapping.type is not None:
        name = (row[mapping.type] or "").strip()
        return dict(mapping.type_names).get(name, name)
    if mapping.cancel_prefix and invoice.startswith(mapping.cancel_prefix):
        return "cancel"
    return mapping.default_type


def _row_amount(
    row: dict[str, str],
    mapping: CsvMapping,
    event_type: str,
    path: Path,
    number: int,
) -> Decimal | None:
    """The row's money (None: a purchase row to leave out, e.g. quantity or price <= 0)."""
    try:
        if mapping.amount is None and mapping.quantity is None:
            quantity, price = Decimal(1), Decimal(0)  # no money in this file
        elif mapping.amount is not None:
            text = (row[mapping.amount] or "").strip()
            value = Decimal(text) if text else Decimal(0)
            quantity, price = Decimal(1), value
        else:
            assert mapping.quantity is not None and mapping.price is not None
            quantity, price = Decimal(row[mapping.quantity]), Decimal(row[mapping.price])
    except InvalidOperation:
        raise HistoryError(f"{path}:{number}: amount, quantity or price is not a number") from None
    if event_type == "purchase" and (quantity <= 0 or price <= 0):
        return None
    return abs(quantity * price)


def _to_event(draft: _Draft) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": draft.event_id,
        "user_id": draft.user_id,
        "type": draft.type,
        "ts": draft.ts_ms,
    }
    if draft.type in ("purchase", "cancel") and draft.cents:
        event["amount"] = float(draft.cents.quantize(CENT, rounding=ROUND_HALF_UP))
    if draft.category:
        event["category"] = draft.category
    return event


def _parse_ms(text: str, time_format: str, path: Path, number: int) -> int:
    try:
        parsed = datetime.strptime(text.strip(), time_format)
    except ValueError:
        raise HistoryError(
            f"{path}:{number}: time {text!r} does not match {time_format!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return round(parsed.timestamp() * 1000)


def _parse_iso_ms(text: str, path: Path, number: int) -> int:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise HistoryError(f"{path}:{number}: ts {text!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return round(parsed.timestamp() * 1000)
