"""The reputation guard: a category whose hard bounces or complaints climb is paused.

Mailbox providers throttle a sender whose hard bounces pass about 2% and ask complaints to
stay under 0.3%; providers suspend accounts that ignore them. The guard keeps, per category
and hour, the mail sent and the hard bounces and complaints it brought (items added to
atomically, gone after two days), and judges the last 24 hours: past ``PAUSE_BOUNCE_RATE``
or ``PAUSE_COMPLAINT_RATE``, counted once ``PAUSE_MIN_VOLUME`` mails were sent, the
category is **paused**: its new rows stay, ``paused``, until a person resumes it (and the
judgement then starts again from that moment). Half a threshold is a **warning**. Each
category judges itself, transactional mail included: a newsletter's bounces never pause a
password reset.

The dispatcher reads every category's standing once per batch (one ``BatchGetItem``); the
counts are judged where they change (a bounce or complaint), never by a Scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from dispatcher.storage.dynamodb import batch_get, conditionally, translated
from dispatcher.support.clock import iso_utc, parse_iso

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from dispatcher.config.settings import Settings

__all__ = ["WINDOW", "Judgement", "ReputationGuard", "Thresholds"]

#: The window the shares are judged over.
WINDOW = timedelta(hours=24)
#: How long an hour's counts are kept.
KEPT = timedelta(hours=48)


@dataclass(frozen=True)
class Thresholds:
    bounce_rate: float
    complaint_rate: float
    min_volume: int


@dataclass(frozen=True)
class Judgement:
    """A category's standing over the window: why it pauses, or why it warns, or neither."""

    sent: int
    bounced: int
    complained: int
    pause: str | None = None
    warning: str | None = None


class ReputationGuard:
    def __init__(self, *, table: str, boto3_client: DynamoDBClient, thresholds: Thresholds) -> None:
        self.table = table
        self._client = boto3_client
        self.thresholds = thresholds

    @classmethod
    def from_settings(cls, settings: Settings, client: DynamoDBClient) -> ReputationGuard | None:
        if not settings.reputation_table_name:
            return None
        return cls(
            table=settings.reputation_table_name,
            boto3_client=client,
            thresholds=Thresholds(
                settings.pause_bounce_rate,
                settings.pause_complaint_rate,
                settings.pause_min_volume,
            ),
        )

    def add(
        self, category: str, now: datetime, *, sent: int = 0, bounced: int = 0, complained: int = 0
    ) -> None:
        """Count mail of ``category`` in the hour of ``now`` (atomic adds)."""
        counts = {"sent": sent, "bounced": bounced, "complained": complained}
        adds = {k: v for k, v in counts.items() if v}
        if not adds:
            return
        names = {f"#{k}": k for k in adds}
        values: dict[str, Any] = {f":{k}": {"N": str(v)} for k, v in adds.items()}
        values[":e"] = {"N": str(int((now + KEPT).timestamp()))}
        with translated():
            self._client.update_item(
                TableName=self.table,
                Key={"name": {"S": _hour_key(category, now)}},
                UpdateExpression="ADD "
                + ", ".join(f"#{k} :{k}" for k in adds)
                + " SET expires_at = :e",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )

    def judge(self, category: str, now: datetime) -> Judgement:
        """The category's shares over the window (from its last resume, if later)."""
        standing = self._standing([category]).get(category, {})
        since = now - WINDOW
        resumed = parse_iso(standing.get("resumed_at", {}).get("S"))
        if resumed is not None and resumed > since:
            since = resumed
        hours = [since.replace(minute=0, second=0, microsecond=0) + timedelta(hours=n)
                 for n in range(25)]  # fmt: skip
        keys = [{"name": {"S": _hour_key(category, h)}} for h in hours if h <= now]
        totals = {"sent": 0, "bounced": 0, "complained": 0}
        for item in batch_get(self._client, self.table, keys):
            for name in totals:
                totals[name] += int(item.get(name, {}).get("N", "0"))
        return self._judged(category, **totals)

    def assess(self, category: str, now: datetime) -> Judgement:
        """Judge the category and keep its standing; a pause is kept until resumed. Returns
        the judgement, its ``pause`` set only when this assessment paused it."""
        judged = self.judge(category, now)
        current = self._standing([category]).get(category, {})
        already = current.get("paused", {}).get("BOOL") is True
        sets = {"warning": judged.warning or ""}
        newly = judged.pause is not None and not already
        if judged.pause is not None and newly:
            sets |= {"paused_reason": judged.pause, "paused_at": iso_utc(now)}
        update = "SET " + ", ".join(f"#{k} = :{k}" for k in sets)
        values: dict[str, Any] = {f":{k}": {"S": v} for k, v in sets.items()}
        if newly:
            update += ", #paused = :p"
            values[":p"] = {"BOOL": True}
        names = {f"#{k}": k for k in sets} | ({"#paused": "paused"} if newly else {})
        with translated():
            self._client.update_item(
                TableName=self.table,
                Key={"name": {"S": _standing_key(category)}},
                UpdateExpression=update,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        return judged if newly else Judgement(judged.sent, judged.bounced, judged.complained,
                                              None, judged.warning)  # fmt: skip

    def paused(self, categories: tuple[str, ...]) -> dict[str, str]:
        """The paused ones among ``categories``, each with why: one read."""
        out = {}
        for category, item in self._standing(categories).items():
            if item.get("paused", {}).get("BOOL") is True:
                out[category] = item.get("paused_reason", {}).get("S", "paused")
        return out

    def standings(self, categories: tuple[str, ...]) -> dict[str, dict[str, str]]:
        """Each category's standing as people read it: paused (why, since) or warned."""
        out: dict[str, dict[str, str]] = {}
        for category, item in self._standing(categories).items():
            paused = item.get("paused", {}).get("BOOL") is True
            warning = item.get("warning", {}).get("S", "")
            if paused or warning:
                out[category] = {
                    "paused": item.get("paused_reason", {}).get("S", "") if paused else "",
                    "paused_at": item.get("paused_at", {}).get("S", "") if paused else "",
                    "warning": warning,
                }
        return out

    def all_standings(self) -> dict[str, dict[str, str]]:
        """Every category's standing that says something (for people: a Scan of a table of
        a few hundred items, two days of hourly counts)."""
        categories = []
        with translated():
            for page in self._client.get_paginator("scan").paginate(
                TableName=self.table,
                FilterExpression="begins_with(#n, :s)",
                ExpressionAttributeNames={"#n": "name"},
                ExpressionAttributeValues={":s": {"S": "standing#"}},
                ProjectionExpression="#n",
            ):
                categories += [i["name"]["S"].removeprefix("standing#") for i in page["Items"]]
        return self.standings(tuple(sorted(categories)))

    def resume(self, category: str, now: datetime, *, by: str) -> bool:
        """Lift a pause; the shares are judged from now on. False if it was not paused."""
        return conditionally(
            self._client.update_item,
            TableName=self.table,
            Key={"name": {"S": _standing_key(category)}},
            UpdateExpression=(
                "SET #paused = :f, resumed_at = :now, resumed_by = :by, warning = :empty"
            ),
            ConditionExpression="#paused = :t",
            ExpressionAttributeNames={"#paused": "paused"},
            ExpressionAttributeValues={
                ":f": {"BOOL": False}, ":t": {"BOOL": True}, ":now": {"S": iso_utc(now)},
                ":by": {"S": by}, ":empty": {"S": ""},
            },
        )  # fmt: skip

    def _judged(self, category: str, *, sent: int, bounced: int, complained: int) -> Judgement:
        t = self.thresholds
        if sent < t.min_volume:
            return Judgement(sent, bounced, complained)
        shares = (
            ("hard bounces", bounced / sent, t.bounce_rate, "PAUSE_BOUNCE_RATE"),
            ("complaints", complained / sent, t.complaint_rate, "PAUSE_COMPLAINT_RATE"),
        )
        for what, share, limit, name in shares:
            if share > limit:
                reason = (
                    f"{category} mail is paused: {what} were {share:.1%} of {sent:,} mails "
                    f"over the last 24 hours, past {name} ({limit:.1%})"
                )
                return Judgement(sent, bounced, complained, pause=reason)
        for what, share, limit, name in shares:
            if share > limit / 2:
                warning = (
                    f"{what} are {share:.1%} of {sent:,} {category} mails over the last 24 "
                    f"hours, half way to {name} ({limit:.1%})"
                )
                return Judgement(sent, bounced, complained, warning=warning)
        return Judgement(sent, bounced, complained)

    def _standing(self, categories: tuple[str, ...] | list[str]) -> dict[str, dict[str, Any]]:
        if not categories:
            return {}
        keys = [{"name": {"S": _standing_key(c)}} for c in categories]
        items = batch_get(self._client, self.table, keys)
        return {str(i["name"]["S"]).removeprefix("standing#"): i for i in items}


def _hour_key(category: str, moment: datetime) -> str:
    return f"count#{category}#{moment.strftime('%Y-%m-%dT%H')}"


def _standing_key(category: str) -> str:
    return f"standing#{category}"
