from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from stream.feeds.history import ONLINE_RETAIL, REES46, CsvMapping, HistoryError, read_history
from tests.support.data import rees46_sample_path

RETAIL_HEADER = (
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_online_retail_rows_become_one_event_per_invoice(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "retail.csv.gz",
        RETAIL_HEADER
        + (
            "2,A,x,3,2011-01-02 10:00:00,0.335,17,UK\n"  # 1.005
            "2,B,y,1,2011-01-02 10:00:00,1.00,17,UK\n"  # invoice 2: 2.005 -> 2.01 (half up)
            "2,C,bad,-1,2011-01-02 10:00:00,5.00,17,UK\n"  # non-positive quantity: left out
            "1,A,x,2,2011-01-01 09:30:00,2.55,18,UK\n"
            "3,A,x,2,2011-01-03 09:30:00,2.55,,UK\n"  # no customer: no event
            "4,Z,fee,1,2011-01-03 09:30:00,0,17,UK\n"  # only a zero-price line: no event
            "C5,A,x,-2,2011-01-04 08:00:00,2.55,18,UK\n"
        ),
    )
    events = read_history(path, ONLINE_RETAIL)
    assert [(e["event_id"], e["user_id"], e["type"], e.get("amount")) for e in events] == [
        ("1", "18", "purchase", 5.1),
        ("2", "17", "purchase", 2.01),
        ("C5", "18", "cancel", 5.1),
    ]
    assert events[0]["ts"] == 1293874200000  # 2011-01-01T09:30:00Z


def test_a_mapped_csv_with_types_and_amounts(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "clicks.csv",
        (
            "when;who;what;paid\n"
            "2019-10-01 00:00:05 UTC;u1;view;\n"
            "2019-10-01 00:00:01 UTC;u2;purchase;12.5\n"
        ),
    )
    mapping = CsvMapping(
        user="who",
        time="when",
        type="what",
        amount="paid",
        delimiter=";",
        time_format="%Y-%m-%d %H:%M:%S UTC",
    )
    events = read_history(path, mapping)
    assert [(e["user_id"], e["type"], e.get("amount")) for e in events] == [
        ("u2", "purchase", 12.5),
        ("u1", "view", None),
    ]
    assert events[0]["event_id"] == "clicks.csv:3"  # file and line: stable across replays


def test_json_lines_are_sorted_by_event_time(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "events.jsonl",
        (
            '{"event_id": "b", "user_id": "u", "type": "view", "ts": "2026-01-02T00:00:00Z"}\n\n'
            '{"event_id": "a", "user_id": "u", "type": "view", "ts": 1767225600000}\n'
        ),
    )
    assert [e["event_id"] for e in read_history(path)] == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "mapping", "message"),
    [
        ("a,b\n1,2\n", CsvMapping(user="user", time="b", amount="a"), "no column user"),
        ("u,t,a\nx,yesterday,1\n", CsvMapping(user="u", time="t", amount="a"), "does not match"),
        (
            "u,t,a\nx,2011-01-01 00:00:00,lots\n",
            CsvMapping(user="u", time="t", amount="a"),
            "not a number",
        ),
        (
            "u,t,q\nx,2011-01-01 00:00:00,1\n",
            CsvMapping(user="u", time="t", quantity="q"),
            "quantity and a price",
        ),
    ],
)
def test_bad_files_raise_a_clear_error(
    tmp_path: Path,
    text: str,
    mapping: CsvMapping,
    message: str,
) -> None:
    with pytest.raises(HistoryError, match=message):
        read_history(write(tmp_path, "bad.csv", text), mapping)


def test_a_json_line_that_is_not_an_event_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "events.jsonl", '{"event_id": "a", "ts": 1}\n[1]\n')
    with pytest.raises(HistoryError, match=r"events\.jsonl:2"):
        read_history(path)


def test_the_rees46_clickstream_sample_reads_with_its_preset() -> None:
    events = read_history(rees46_sample_path(), REES46)
    kinds = {k: sum(e["type"] == k for e in events) for k in ("view", "add_to_cart", "purchase")}
    assert kinds == {"view": 987, "add_to_cart": 3, "purchase": 10}
    assert len({e["user_id"] for e in events}) == 330
    assert all(e["amount"] > 0 for e in events if e["type"] == "purchase")
