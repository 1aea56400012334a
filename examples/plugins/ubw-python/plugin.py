"""`UBWType`: hours registered per period, one row per document.

Build: `batch-job-aurora plugin build .`; check: `batch-job-aurora plugin check <wasm> --docs
fixtures/ubw.json`; test: `python3 -m unittest` (re-bless the goldens with `BLESS=1`).
"""

from aurora_kit import FLOAT, TEXT, TypePlugin, path


class UBWTypePlugin(TypePlugin):
    type_name = "UBWType"
    version = "0.1.0"
    # The columns, declared once, in table order: a name, a kind (TEXT, INT, FLOAT, BOOLEAN)
    # and a JSON Pointer from the envelope (`/data/...`, `/id`, `/timestamp`). A missing step
    # or a value of the wrong kind gives NULL (None), never an error. `id` and `timestamp` are
    # implicit.
    columns = [
        path("reg_period", TEXT, "/data/reg_period"),
        path("used_hours", FLOAT, "/data/used_hrs"),  # DECIMAL(20,2) in MySQL
    ]

    # The default transform gives one row of every path column. Override it to refuse
    # documents (`return Refused("why")`) or to compute a column (`column("name", TEXT)`,
    # then `return self.row(parsed, name=value)`):
    #
    # def transform(self, parsed, host):
    #     return self.row(parsed)


PLUGIN = UBWTypePlugin()
