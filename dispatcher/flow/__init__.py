"""The record flow of the stream-triggered function and the sweeper: what a record means
(``triage``), the record flow and the batch (``dispatch``), the history item or the stamp
(``bookkeeping``, ``failure_policy``), one invocation's shared state (``invocation``), what
became of a record (``outcome``), and the sweeper's re-fire of due rows (``sweep``). May
import every layer below it; independent of ``bounces``."""
