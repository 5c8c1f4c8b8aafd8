"""Amazon SES (sesv2 SendEmail with raw MIME): the client (``client``) and the
look-up of a send it may have taken, from SES's own published events (``lookup``)."""
