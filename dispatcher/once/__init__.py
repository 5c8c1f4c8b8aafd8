"""Exactly-once sending: Powertools Idempotency around the provider send (``send``) and
the look-up that settles a send whose answer never came before the row is sent again
(``settle``). Imports ``pacing``, ``recipients`` and below."""
