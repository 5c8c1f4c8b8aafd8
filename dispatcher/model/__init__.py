"""The mail as data: the send-table row and its attributes (``row``), the message it
parses into or the readable problems it has (``message``, ``checks``), the limits a row is held
to (``blastengine_limits``, from BLASTENGINE.md), the plain-text part made from HTML
(``html_text``), the marker of a send whose answer never came (``unsettled``), the stamp
of a row that stays (``stamp``) and a sent mail's delivery statuses (``delivery_status``). Pure: no
I/O, no configuration; imports only ``support``."""
