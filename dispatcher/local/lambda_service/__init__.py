"""The Lambda service as the stack plays it: the event source mapping
(``poller`` reads the shards, ``shard_consumer`` one shard's ordered delivery, ``mapping`` its
settings and on-failure file), execution environments as processes (``environments``,
``worker``, ``chaos``), the context a handler is given (``context``) and Function URLs
(``function_url``)."""
