"""blastengine: the HTTP client for ``POST /deliveries/transaction``
(``client``), its wire shapes (``wire``), one result of its mail log (``results``), the
look-up of a delivery it may have taken (``lookup``) and the account's credentials
(``credentials``)."""
