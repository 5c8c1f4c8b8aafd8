"""The Lambda service as the stack plays it: the event source mapping
(``poller`` reads the shards, ``shard_consumer`` one shard's ordered delivery, ``mapping`` its
settings and on-failure file), execution environments as processes running AWS's runtime
interface client (``environments``, ``execution_environment``, ``bootstrap``, ``chaos``) against
a Runtime API of their own (``runtime_api``), the context the CLI's in-process ``invoke``
gives a handler (``context``) and Function URLs (``function_url``)."""
