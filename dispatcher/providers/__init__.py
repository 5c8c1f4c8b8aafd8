"""Mail providers: one interface (``base``), one error tree (``errors``), a package per
backend (``blastengine/``, ``ses/``: client, wire format, look-up of a mail it may have taken),
which provider sends and when failover takes over (``routing``, ``circuit``), the attachments
bucket, and the providers a deployment names (``deployment``). Independent of the record flow:
imports ``config``, ``storage``, ``model``, ``support`` only. Empty, so importing one provider
loads no other."""
