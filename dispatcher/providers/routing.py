"""Which provider sends a mail, and when the failover provider takes it instead.

The rules (docs/concepts/providers.md):

- a row that names ``provider`` is sent through that one only, never failed over;
- otherwise ``MAIL_PROVIDER`` sends it, and with ``FAILOVER_PROVIDER`` set, a send that
  failed in a way that *proves* the primary did not take the mail (it could not be reached,
  a 5xx, a 429 after its requests, a refused account) goes through the failover provider in
  the same invocation (:func:`proves_not_taken`);
- an ambiguous send (no answer) is never failed over: its row waits for the look-up, and
  only a look-up that says "not taken" lets it be sent again, by these same rules;
- a permanent refusal of the mail itself (invalid, rejected, suppressed) is never failed over:
  the other provider would refuse it too, or should not be asked to;
- after ``FAILOVER_THRESHOLD`` such failures within a window, across the deployment, the
  primary's :class:`~dispatcher.providers.circuit.Circuit` opens and it is skipped for the
  cool-down.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from dispatcher.model.message import Message
from dispatcher.providers.errors import (
    AmbiguousSendError,
    ConfigError,
    ProviderError,
    TransientError,
)
from dispatcher.support.observability import logger

if TYPE_CHECKING:
    from dispatcher.providers.base import MailProvider
    from dispatcher.providers.circuit import Circuit

__all__ = ["Routes", "proves_not_taken"]


def proves_not_taken(error: ProviderError) -> bool:
    """The failure shows the provider did not take the mail, and says nothing against it."""
    if isinstance(error, AmbiguousSendError):
        return False
    return isinstance(error, TransientError | ConfigError)


class Routes:
    """The deployment's providers by name, its primary and failover, and the circuit."""

    def __init__(
        self,
        providers: Mapping[str, MailProvider],
        *,
        primary: str,
        failover: str | None = None,
        circuit: Circuit | None = None,
        failover_after_attempts: int = 2,
    ) -> None:
        self._providers = dict(providers)
        self.primary = primary
        self.failover = failover
        self._circuit = circuit
        self._after = failover_after_attempts

    @classmethod
    def single(cls, provider: MailProvider) -> Routes:
        """One provider, no failover (tests, one-off runs)."""
        return cls({provider.name: provider}, primary=provider.name)

    def plan(self, message: Message) -> tuple[str, ...]:
        """The providers to try, in order."""
        if message.provider is not None:
            return (message.provider,)
        if self.failover is None:
            return (self.primary,)
        if self._circuit is not None and self._circuit.is_open():
            return (self.failover,)
        return (self.primary, self.failover)

    def every(self) -> tuple[str, ...]:
        """What an interrupted send may have gone to (its plan is not known any more)."""
        return (self.primary,) if self.failover is None else (self.primary, self.failover)

    def provider(self, name: str) -> MailProvider:
        try:
            return self._providers[name]
        except KeyError:
            raise ConfigError(f"provider {name!r} is not configured for this deployment") from None

    def budget(self, name: str, plan: tuple[str, ...], budget: int) -> int:
        """Requests ``name`` may make for a row: the primary yields after a few when
        another provider is waiting behind it."""
        return min(budget, self._after) if name != plan[-1] else budget

    def failed(self, name: str) -> None:
        """``name`` failed a send in a way that proves it did not take it. Counting it
        never holds up the failover: a circuit that cannot count stays closed."""
        if self._circuit is not None and name == self._circuit.provider:
            try:
                self._circuit.failed()
            except Exception:
                logger.exception("the circuit could not count a failure")
