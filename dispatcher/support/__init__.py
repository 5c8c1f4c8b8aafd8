"""What every part of the functions uses: time that tests can inject (``clock``) and the
Powertools logger, metrics and tracer (``observability``). Imports nothing of the package."""
