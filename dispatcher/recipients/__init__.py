"""Who may receive a mail: the suppression list and leaving suppressed addresses out
(``suppression``), staging's allowlist and redirect (``staging``). Imports ``storage`` and
below."""
