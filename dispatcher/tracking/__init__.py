"""A mail's life after the provider took it: its delivery status on the history item
(the states and their order are ``model/delivery_status``), moved only forward by whatever
reports it (SES's events, blastengine's mail log, bounces) through one conditional update
(``book``). Imports ``notify``, ``storage`` and below."""
