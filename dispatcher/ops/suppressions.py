"""The suppression list as people manage it: filtered, exported, imported.

An export is CSV (``address,scope,reason,added_at,added_by,message``); an import takes the
same columns (``address`` alone will do: ``scope`` defaults to ``all``), or a plain list of
addresses one per line, as other providers export theirs. Every line is checked before
anything is written: an import with a bad line writes nothing and names the line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from dispatcher.model.row import CATEGORY, checked_address
from dispatcher.recipients.suppression import ALL, Suppression, SuppressionList
from dispatcher.support.clock import iso_utc

__all__ = ["COLUMNS", "ImportRefusedError", "export_csv", "filtered", "parse_import", "scope_of"]

COLUMNS = ("address", "scope", "reason", "added_at", "added_by", "message")


class ImportRefusedError(ValueError):
    """An import file with lines that are not entries; nothing was written."""


@dataclass(frozen=True)
class Imported:
    entries: list[Suppression]


def scope_of(category: str | None) -> str:
    """``--category`` as an entry's scope (``all`` without one); ValueError if no name."""
    if category is None or category == ALL:
        return ALL
    if not CATEGORY.fullmatch(category):
        raise ValueError(f"{category!r} is not a category name (a-z, 0-9, '_', '-')")
    return category


def filtered(
    entries: Iterable[Suppression], *, scope: str | None = None, since: str | None = None
) -> Iterator[Suppression]:
    """The entries of ``scope`` (any without one) added at or after ``since`` (UTC)."""
    for entry in entries:
        if scope is not None and entry.scope != scope:
            continue
        if since is not None and entry.added_at < since:
            continue
        yield entry


def export_csv(entries: Iterable[Suppression]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for e in entries:
        writer.writerow(
            [e.address, e.scope, e.reason, e.added_at, e.added_by or "", e.message or ""]
        )
    return buffer.getvalue()


def parse_import(text: str, *, by: str = "import") -> list[Suppression]:
    """The entries of an import file (CSV with a header, or one address per line), each
    checked; raises :class:`ImportRefusedError` naming every bad line."""
    now = iso_utc(datetime.now(UTC))
    rows = list(csv.reader(io.StringIO(text)))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    has_header = "address" in header
    columns = header if has_header else ["address"]
    problems: list[str] = []
    entries: list[Suppression] = []
    for number, row in enumerate(rows[1:] if has_header else rows, 2 if has_header else 1):
        if not any(cell.strip() for cell in row):
            continue
        values = dict(zip(columns, (cell.strip() for cell in row), strict=False))
        try:
            address = checked_address(values.get("address", ""))
            scope = scope_of(values.get("scope") or None)
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
            continue
        entries.append(
            Suppression(
                address=address,
                reason=(values.get("reason") or "OPERATOR").upper(),
                added_at=values.get("added_at") or now,
                message=values.get("message") or None,
                scope=scope,
                added_by=by,
            )
        )
    if problems:
        raise ImportRefusedError("; ".join(problems[:20]) + (" ..." if len(problems) > 20 else ""))
    return entries


def add_all(suppressions: SuppressionList, entries: Iterable[Suppression]) -> int:
    count = 0
    for entry in entries:
        suppressions.add(entry)
        count += 1
    return count
