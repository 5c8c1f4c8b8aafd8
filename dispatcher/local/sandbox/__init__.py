"""A blastengine-compatible sandbox: the server (``server``) in its own process
(``process``), what the API accepts (``rules``), its rate limit in blastengine's shape or a
gateway's (``window``), its credentials, faults and the mails it took (``model``), and its
delivery look-ups (``lookups``). It answers to BLASTENGINE.md, never to the client."""
