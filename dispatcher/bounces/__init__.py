"""The one path for every bounce and complaint: blastengine's payload (``payload``),
the bounce table, history item and suppression (``ledger``), the webhook's receiver
(``webhook``), the catch-up from the delivery logs (``catch_up``) and SES's published events
(``ses_events``). Independent of ``flow``."""
