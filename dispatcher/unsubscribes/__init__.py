"""One-click unsubscribe, answered by the stack (RFC 8058): the endpoint the links lead to
(``endpoint``). The links are signed by ``recipients.unsubscribe_links``; an unsubscribe is a
suppression for one category. Imports ``notify``, ``recipients`` and below."""
