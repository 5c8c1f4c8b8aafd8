"""The reputation guard: per category, mail sent and the hard bounces and complaints it
brought, and a category paused when their shares climb (``guard``). Imports ``storage`` and
below."""
