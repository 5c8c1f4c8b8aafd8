"""Templates: mail written once, rendered at send time. A version as saved (``version``),
the templates table (``library``), a row read with its template (``rows``); imported only
when a row names a template: the sandbox (``engine``), its time limit (``watchdog``) and
rendering (``render``). Imports ``storage``, ``model`` and ``support``; the checks a save
makes are the operators' (``dispatcher/ops/template_source.py``)."""
