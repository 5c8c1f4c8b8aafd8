"""The one path for every bounce and complaint: what a bounce is (``event``), blastengine's
webhook body (``payload``), the bounce table, history item and suppression (``ledger``), what
a new bounce tells operators and applications (``signals``), the webhook's receiver
(``webhook``), the catch-up from the delivery logs (``catch_up``) and SES's published events
(``ses_events``). Independent of ``flow``."""
