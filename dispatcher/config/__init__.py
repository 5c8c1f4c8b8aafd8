"""The deployment's configuration: one typed :class:`~dispatcher.config.settings.Settings`
read from the environment, checked once at start. Imports only ``model`` and ``support``;
builds nothing (the parts build themselves from it)."""
