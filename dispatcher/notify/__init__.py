"""What applications are told: delivery events on EventBridge (``delivery_events``),
collected per unit of work and put ten at a time. Never fails a send. Imports ``storage``
(types) and below."""
