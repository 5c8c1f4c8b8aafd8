"""One-click unsubscribe links (RFC 8058): signed tokens naming an address and a category.

Mail of a category that is not ``transactional`` carries the stack's own link, so no
application has to host, sign and honour an endpoint of its own: ``List-Unsubscribe:
<https://.../u/TOKEN>`` (and ``<mailto:...>`` where configured) with ``List-Unsubscribe-Post:
List-Unsubscribe=One-Click``. The token is signed with ItsDangerous (HMAC-SHA256 over the
payload and a timestamp: the Pallets project's signer, the field's standard for this), so it
cannot be made for another address or category, and it expires (``UNSUBSCRIBE_TOKEN_DAYS``, a
year by default). The keys rotate: the first of ``UNSUBSCRIBE_KEYS`` signs, every one of them
is accepted, so a new key is put first and the old one kept until the mail it signed has aged
out. A row that carries its own ``list_unsubscribe_url`` keeps it: that application hosts its
own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from dispatcher.config.settings import SettingsError
from dispatcher.model.blastengine_limits import UNSUBSCRIBE_CHARS
from dispatcher.model.message import Message
from dispatcher.model.row import CATEGORY, TRANSACTIONAL, normalise_address

if TYPE_CHECKING:
    from dispatcher.config.settings import Settings

__all__ = [
    "MIN_KEY_BYTES",
    "Unsubscribe",
    "UnsubscribeLinks",
    "keys_loader",
]

#: The shortest signing key taken: shorter could be guessed.
MIN_KEY_BYTES = 32
#: Separates the keys of ``UNSUBSCRIBE_KEYS`` (newest first).
_KEY_SEPARATOR = ","
_SALT = "mail-dispatcher/list-unsubscribe"


@dataclass(frozen=True)
class Unsubscribe:
    """What a valid token asks: ``address`` wants no more ``category`` mail."""

    address: str
    category: str


class UnsubscribeLinks:
    """Signs the links mail carries and reads the tokens they come back with."""

    def __init__(
        self,
        *,
        base_url: str,
        keys: Callable[[], Sequence[str]],
        max_age: timedelta = timedelta(days=365),
        mailto: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._keys = keys
        self.max_age = max_age
        self.mailto = mailto

    @classmethod
    def from_settings(cls, settings: Settings) -> UnsubscribeLinks | None:
        """The deployment's links; None where it serves no unsubscribe endpoint."""
        if not settings.unsubscribe_base_url:
            return None
        loader = keys_loader(settings)
        loader()  # a missing or short key stops the function at start, naming it
        return cls(
            base_url=settings.unsubscribe_base_url,
            keys=loader,
            max_age=timedelta(days=settings.unsubscribe_token_days),
            mailto=settings.unsubscribe_mailto,
        )

    @classmethod
    def reader(cls, settings: Settings) -> UnsubscribeLinks:
        """The endpoint's: it reads tokens, and signs none."""
        loader = keys_loader(settings)
        loader()
        return cls(
            base_url=settings.unsubscribe_base_url or "",
            keys=loader,
            max_age=timedelta(days=settings.unsubscribe_token_days),
        )

    def link(self, message: Message) -> Message:
        """The message with the stack's one-click link, if its category is not
        transactional and it carries no link of its own (nor a link too long to carry)."""
        if message.category == TRANSACTIONAL or message.list_unsubscribe_url:
            return message
        url = f"{self.base_url}/u/{self.token(message.to, message.category)}"
        if len(url) > UNSUBSCRIBE_CHARS:
            return message  # an address so long its link passes the header's limit
        mailto = message.list_unsubscribe_mailto or (
            f"mailto:{self.mailto}?subject=unsubscribe" if self.mailto else None
        )
        return replace(message, list_unsubscribe_url=url, list_unsubscribe_mailto=mailto)

    def token(self, address: str, category: str) -> str:
        payload = {"a": normalise_address(address), "c": category}
        return str(self._serializer().dumps(payload))

    def read(self, token: str) -> Unsubscribe | None:
        """What ``token`` asks, or None for one that is not ours, was altered or expired."""
        try:
            payload = self._serializer().loads(token, max_age=int(self.max_age.total_seconds()))
        except (BadSignature, SignatureExpired, ValueError):
            return None
        if not isinstance(payload, dict):
            return None
        address, category = payload.get("a"), payload.get("c")
        if not isinstance(address, str) or "@" not in address:
            return None
        if not isinstance(category, str) or not CATEGORY.fullmatch(category):
            return None
        return Unsubscribe(address, category)

    def _serializer(self) -> URLSafeTimedSerializer:
        # ItsDangerous signs with the last key and accepts every one: newest first here.
        return URLSafeTimedSerializer(
            list(reversed(self._keys())),
            salt=_SALT,
            signer_kwargs={"digest_method": hashlib.sha256},
        )


def keys_loader(settings: Settings) -> Callable[[], list[str]]:
    """The signing keys, newest first: ``UNSUBSCRIBE_KEYS`` locally, else the SSM
    SecureString ``UNSUBSCRIBE_KEYS_PARAMETER`` names (cached five minutes, so a rotation is
    picked up within that). Each must be at least :data:`MIN_KEY_BYTES` bytes."""
    if settings.unsubscribe_keys:
        static = _keys(settings.unsubscribe_keys, "UNSUBSCRIBE_KEYS")
        return lambda: static
    name = settings.unsubscribe_keys_parameter
    if not name:
        raise SettingsError("UNSUBSCRIBE_KEYS_PARAMETER (or UNSUBSCRIBE_KEYS locally) is required")

    def load() -> list[str]:
        from aws_lambda_powertools.utilities import parameters

        value = parameters.get_parameter(name, decrypt=True, max_age=300)
        return _keys(value if isinstance(value, str) else "", name)

    return load


def _keys(raw: str, name: str) -> list[str]:
    keys = [k.strip() for k in raw.split(_KEY_SEPARATOR) if k.strip()]
    if not keys:
        raise SettingsError(f"{name} holds no key")
    for n, key in enumerate(keys, 1):
        if len(key.encode()) < MIN_KEY_BYTES:
            raise SettingsError(f"{name}: key {n} is shorter than {MIN_KEY_BYTES} bytes")
    return keys
