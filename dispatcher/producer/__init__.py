"""For applications that write rows: check a row with the dispatcher's own parser, insert it once.

``schema.py`` generates the row's JSON Schema (``schema/send-row.schema.json``) from the same
parser's limits, for producers in other languages. Neither ships in the Lambda package.
"""

from dispatcher.producer.rows import Produced, check_row, insert_row

__all__ = ["Produced", "check_row", "insert_row"]
