"""What operators run beside the functions, never in the Lambda package.

``cli/`` is the ``dispatcher`` command, ``console/`` the web console, ``admin.py`` the queries
and conditional writes both are made of, ``targets.py`` finding the stack they talk to (the
local one or a deployed one). They import the functions' modules; the functions import none of
these (``tests/functional/test_cold_start.py``).
"""
