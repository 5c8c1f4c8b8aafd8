"""What the sandbox is told and what it keeps: its credentials, its faults, the mails it took.

Shared by the sandbox's server (:mod:`.sandbox`), the parent that starts it in a process of
its own (:mod:`.sandbox_process`), the stack and the CLI that tell it how to misbehave.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dispatcher.local.sandbox.window import check_shape
from dispatcher.model.blastengine_limits import ATTACHMENT_BYTES

__all__ = [
    "API_KEY_VARIABLE",
    "DEFAULT_LOOKUP_LAG",
    "SANDBOX_API_KEY",
    "SANDBOX_LOGIN_ID",
    "Faults",
    "SentMail",
    "bounces_of",
]

#: The sandbox's own credentials (README), used when the environment sets none.
SANDBOX_LOGIN_ID = "sandbox"
SANDBOX_API_KEY = "sandbox-api-key"  # not a real account's key
#: The environment variable that hands the sandbox process its API key.
API_KEY_VARIABLE = "DISPATCHER_SANDBOX_API_KEY"
#: Seconds an accepted mail stays invisible to the look-ups unless told otherwise.
DEFAULT_LOOKUP_LAG = 1.0


@dataclass(frozen=True)
class Faults:
    """What share of requests misbehave, and how."""

    rate_limited: float = 0.0  # share answered 429
    server_error: float = 0.0  # share answered 500
    retry_after: float = 1.0  # seconds, sent with each 429
    latency: float = 0.0  # seconds added to every answer
    timeout: float = 0.0  # share that hangs for hang_seconds, then 504, mail NOT accepted
    accepted_timeout: float = 0.0  # share accepted, then answered only after hang_seconds
    hang_seconds: float = 5.0
    hang_once_to: tuple[str, ...] = ()  # recipients whose first mail is accepted, answered late
    rate_limit: float = 0.0  # requests/second accepted before answering 429; 0: no limit
    #: The limit's shape (:mod:`.window`): ``fixed`` one-second windows, as blastengine
    #: describes its limit, or an API gateway's token ``bucket``.
    window: str = "fixed"
    fail_to: tuple[str, ...] = ()  # recipients always answered 500 (for demos)
    attachment_limit: int = ATTACHMENT_BYTES  # bytes of attachments per mail (the contract's)
    #: Recipients that bounce: an address, or "@domain" for every address there, to the
    #: bounce type (HARDERROR, SOFTERROR, DROP). Accepted, then reported by webhook.
    bounce: dict[str, str] = field(default_factory=dict)
    #: A share of the mail taken whose ``to`` is reported HARDERROR whatever the rules say
    #: (to watch the reputation guard pause a category).
    bounce_share: float = 0.0
    webhook: bool = True  # report bounces to the webhook (off: only /logs/mails/results has them)
    bounce_delay: float = 0.3  # seconds between accepting a mail and reporting its bounces
    #: Seconds after which a soft-bounced recipient is delivered by a retry: its result in
    #: /logs/mails/results turns from SOFTERROR to SENT, as blastengine's retries end.
    soft_retry: float = 5.0
    #: Seconds before an accepted mail shows in /logs/mails/results, the look-up that finds
    #: a mail by recipient: the real mail log is not instant either.
    lookup_lag: float = DEFAULT_LOOKUP_LAG
    lookups_down: bool = False  # answer every look-up 503
    seed: int | None = None

    def __post_init__(self) -> None:
        check_shape(self.window)

    @classmethod
    def from_json(cls, data: dict[str, Any], base: Faults | None = None) -> Faults:
        current = base or cls()
        known = {k: v for k, v in data.items() if k in asdict(current)}
        for name in ("fail_to", "hang_once_to"):
            if name in known:
                known[name] = tuple(known[name])
        if "bounce" in known:
            known["bounce"] = {str(k).lower(): str(v) for k, v in dict(known["bounce"]).items()}
        return replace(current, **known)


@dataclass(frozen=True)
class SentMail:
    """One mail the sandbox accepted; ``attachments`` as received (name, size, type)."""

    delivery_id: int
    received_at: str
    payload: dict[str, Any]
    attachments: tuple[dict[str, Any], ...] = ()
    #: Recipients that bounced, and how (the sandbox's Faults.bounce decided at acceptance).
    bounces: dict[str, str] = field(default_factory=dict)


def bounces_of(body: Any, rules: dict[str, str]) -> dict[str, str]:
    """Which recipients of an accepted mail bounce, by the rules (address or @domain)."""
    if not rules or not isinstance(body, dict):
        return {}
    out = {}
    for address in (body.get("to"), *body.get("cc", []), *body.get("bcc", [])):
        if not isinstance(address, str):
            continue
        lowered = address.lower()
        kind = rules.get(lowered) or rules.get("@" + lowered.rsplit("@", 1)[-1])
        if kind:
            out[address] = kind
    return out
