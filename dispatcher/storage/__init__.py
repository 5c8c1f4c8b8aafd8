"""DynamoDB as the functions call it: how every table is called (``dynamodb``: errors
translated into one small tree, conditions as yes/no, batch reads) and the function's reads and
conditional writes on the send and history tables (``store``). Imports ``config``, ``model``,
``support``."""
