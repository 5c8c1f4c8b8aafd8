"""How fast and how often a send is tried: the invocation's token bucket
(``invocation_bucket``), the account's limit shared by every shard through the limit table
(``account_limit``), what the provider's answers say of its window (``window_watch``), and the
one retry loop with its one retry decision (``retry``). Imports ``providers`` and below."""
