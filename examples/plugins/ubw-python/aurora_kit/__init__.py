"""The batch-job-aurora plugin kit for Python: columns declared once by path, the same leniency
as the Rust SDK (a missing step or a value of the wrong kind gives NULL, never an error), and
golden tests.

A plugin is a subclass of `TypePlugin` with `type_name`, `version` and `columns`; `app.py`
exports it as a component (`batch-job-aurora plugin build .`). Everything here is plain Python,
so the transform is tested natively (`python3 -m unittest`).
"""

import json
import math
import os
import re

__all__ = [
    "TEXT", "INT", "FLOAT", "BOOLEAN", "SLACK_CHANNELS", "reference_table",
    "Column", "path", "column", "Document", "Parsed", "Refused", "InvalidDocument",
    "CapabilityFailed", "LookupFailed", "TypePlugin", "StaticHost", "read_documents", "render",
    "golden",
]

TEXT = "text"
INT = "int"
FLOAT = "float"
BOOLEAN = "boolean"
KINDS = (TEXT, INT, FLOAT, BOOLEAN)

SLACK_CHANNELS = ("slack-channels",)


def reference_table(name):
    """The capability to look items of reference table `name` up by key."""
    return ("reference-table", name)


_I64_MIN, _I64_MAX = -(2 ** 63), 2 ** 63 - 1


class Column:
    """One column: a name, a kind, and optionally the JSON Pointer its value is found at."""

    def __init__(self, name, kind, pointer=None):
        if kind not in KINDS:
            raise ValueError(f"column {name}: kind must be one of {KINDS}, not {kind!r}")
        self.name = name
        self.kind = kind
        self.pointer = pointer

    def __repr__(self):
        return f"Column({self.name!r}, {self.kind!r}, {self.pointer!r})"


def path(name, kind, pointer):
    """A column whose value is at a JSON Pointer from the envelope (`/data/a/b`, `/id`)."""
    return Column(name, kind, pointer)


def column(name, kind):
    """A column the transform computes itself (give its value by name)."""
    return Column(name, kind)


class Document:
    """One raw document: `id`, `timestamp` (Unix seconds) and `data` (JSON text)."""

    def __init__(self, id, timestamp, data):
        self.id = id
        self.timestamp = timestamp
        self.data = data


class Refused:
    """The type does not want this document (counted, not stored, not an error)."""

    def __init__(self, reason):
        self.reason = reason


class InvalidDocument(Exception):
    """The document does not have the shape this type expects: it fails, and is kept."""


class CapabilityFailed(Exception):
    """A host lookup failed in a way the plugin cannot work around: the document fails."""


class LookupFailed(Exception):
    """A host lookup gave no answer. `kind` is "denied", "not-configured" or "unavailable"."""

    def __init__(self, kind, message=""):
        super().__init__(f"{kind}: {message}" if message else kind)
        self.kind = kind
        self.message = message


# A `\uD800`-`\uDFFF` escape: only a document that has one pays for the check below.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _no_constants(name):
    raise InvalidDocument(f"data is not valid JSON: {name} is not a JSON value")


def _has_lone_surrogate(value):
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return False
        except UnicodeEncodeError:
            return True
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def cell(kind, value):
    """A JSON value as a cell of `kind`, or None (NULL) when the kind does not match."""
    if kind == TEXT:
        return value if isinstance(value, str) else None
    if kind == INT:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return value if ok and _I64_MIN <= value <= _I64_MAX else None
    if kind == FLOAT:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        number = float(value)
        return number if math.isfinite(number) else None
    if kind == BOOLEAN:
        return value if isinstance(value, bool) else None
    raise ValueError(f"unknown kind {kind!r}")


class Parsed:
    """A document with its data parsed once. A repeated key keeps its last value."""

    def __init__(self, document):
        self.document = document
        try:
            self.data = json.loads(document.data, parse_constant=_no_constants)
        except ValueError as error:
            raise InvalidDocument(f"data is not valid JSON: {error}") from None
        if _SURROGATE_ESCAPE.search(document.data) and _has_lone_surrogate(self.data):
            raise InvalidDocument(
                "data is not valid: a lone surrogate escape (\\uD800 to \\uDFFF without its "
                "pair); JSON text must be valid Unicode"
            )

    def pointer(self, pointer):
        """The raw value at a JSON Pointer from the envelope, or None if a step is missing."""
        if pointer == "/id":
            return self.document.id
        if pointer == "/timestamp":
            return self.document.timestamp
        if pointer == "/data":
            return self.data
        if not pointer.startswith("/data/"):
            return None
        value = self.data
        for step in pointer[len("/data/"):].split("/"):
            step = step.replace("~1", "/").replace("~0", "~")
            if isinstance(value, dict):
                if step not in value:
                    return None
                value = value[step]
            elif isinstance(value, list):
                # An index, as in RFC 6901: digits, no leading zero. A key on an array finds
                # nothing.
                if not step.isdigit() or not step.isascii() or (len(step) > 1 and step[0] == "0"):
                    return None
                index = int(step)
                if index >= len(value):
                    return None
                value = value[index]
            else:
                return None
        return value

    def text(self, pointer):
        return cell(TEXT, self.pointer(pointer))

    def int(self, pointer):
        return cell(INT, self.pointer(pointer))

    def float(self, pointer):
        return cell(FLOAT, self.pointer(pointer))

    def boolean(self, pointer):
        return cell(BOOLEAN, self.pointer(pointer))

    def value(self, column):
        """The value of a path column: None when a step is missing or the kind is wrong."""
        return cell(column.kind, self.pointer(column.pointer))


class TypePlugin:
    """A type plugin. Set `type_name`, `version` and `columns`; `capabilities` if it uses any.

    The default `transform` gives one row of every path column. Override it to refuse
    documents or to compute columns: return `self.row(parsed, name=value, ...)` (path columns
    not named are filled from their paths), `Refused(reason)`, or a list of `(id, row)` pairs
    for several rows per document; raise `InvalidDocument` to fail a document.
    """

    type_name = None
    version = "0.1.0"
    columns = []
    capabilities = []

    def transform(self, parsed, host):
        return self.row(parsed)

    def row(self, parsed, **values):
        """A row (a dict by column name): the given values, the rest from their paths."""
        names = {c.name for c in self.columns}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"no such column(s): {', '.join(sorted(unknown))}")
        row = {}
        for c in self.columns:
            if c.name in values:
                row[c.name] = values[c.name]
            elif c.pointer is not None:
                row[c.name] = parsed.value(c)
            else:
                row[c.name] = None
        return row

    def values(self, row):
        """The cells of a row in column order; a computed value of the wrong kind is a bug."""
        cells = []
        for c in self.columns:
            value = row.get(c.name)
            if value is not None and cell(c.kind, value) is None:
                raise TypeError(f"column {c.name} is {c.kind}, but the transform gave {value!r}")
            cells.append(cell(c.kind, value) if value is not None else None)
        return cells

    def outcome(self, document, host):
        """What became of one document: ("rows", [(id or None, cells)]), ("refused", reason)
        or ("failed", (kind, message)) with kind "invalid-document", "capability-failed" or
        "internal"."""
        try:
            result = self.transform(Parsed(document), host)
            if isinstance(result, Refused):
                return ("refused", result.reason)
            if isinstance(result, dict):
                return ("rows", [(None, self.values(result))])
            return ("rows", [(row_id, self.values(row)) for row_id, row in result])
        except InvalidDocument as error:
            return ("failed", ("invalid-document", str(error)))
        except (CapabilityFailed, LookupFailed) as error:
            return ("failed", ("capability-failed", str(error)))
        except Exception as error:  # one bad document never fails its neighbours
            return ("failed", ("internal", f"{type(error).__name__}: {error}"))


class StaticHost:
    """A host for native tests that answers from dicts. An unset capability is not configured,
    as on a real host whose operator configured nothing."""

    def __init__(self, slack_channels=None, references=None):
        self.slack_channels = slack_channels
        self.references = references or {}

    def log(self, level, message):
        pass

    def slack_channel(self, channel_id):
        """The channel's name, or None when Slack does not know it."""
        if self.slack_channels is None:
            raise LookupFailed("not-configured", "no Slack channels in this test")
        return self.slack_channels.get(channel_id)

    def reference_lookup(self, table, key):
        """Every item (a dict) of `table` under `key`."""
        if table not in self.references:
            raise LookupFailed("not-configured", f"no table {table} in this test")
        return list(self.references[table].get(key, []))


_ERROR_PREFIX = {
    "invalid-document": "invalid document",
    "capability-failed": "capability failed",
    "internal": "internal error",
}


def read_documents(text):
    """A document file, as `batch-job-aurora plugin check --docs` reads it: a JSON array of
    envelopes, NDJSON, or one bare `data` object (id `doc-1`, timestamp 0 here)."""

    def envelope(item, index):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise ValueError(f"document {index} has no string id")
        timestamp = item.get("timestamp")
        if not isinstance(timestamp, int) or isinstance(timestamp, bool):
            raise ValueError(f"document {index} has no integer timestamp")
        data = item.get("data")
        return Document(item["id"], timestamp, "{}" if data is None else json.dumps(data))

    stripped = text.lstrip()
    if stripped.startswith("["):
        return [envelope(item, i) for i, item in enumerate(json.loads(text))]
    try:
        single = json.loads(text)
    except ValueError:
        single = None
    if isinstance(single, dict):
        if isinstance(single.get("id"), str) and isinstance(single.get("data"), dict):
            return [envelope(single, 0)]
        return [Document("doc-1", 0, text.strip())]
    lines = [line for line in text.splitlines() if line.strip()]
    return [envelope(json.loads(line), i) for i, line in enumerate(lines)]


def render(plugin, documents, host):
    """The outcomes as `plugin check --json` prints them: {"rows", "refused", "failed"}."""
    rows, refused, failed = [], [], []
    for document in documents:
        kind, detail = plugin.outcome(document, host)
        if kind == "rows":
            for row_id, cells in detail:
                row = {"id": row_id or document.id, "timestamp": document.timestamp}
                row.update({c.name: v for c, v in zip(plugin.columns, cells)})
                rows.append(row)
        elif kind == "refused":
            refused.append({"id": document.id, "reason": detail})
        else:
            error_kind, message = detail
            failed.append({"id": document.id, "stage": "plugin",
                           "error": f"{_ERROR_PREFIX[error_kind]}: {message}"})
    return {"rows": rows, "refused": refused, "failed": failed}


def golden(plugin, directory, host=None):
    """Every `fixtures/<case>.json` under `directory` must give `fixtures/<case>.rows.json`.
    With BLESS=1 in the environment the expected files are written instead."""
    host = host or StaticHost()
    fixtures = os.path.join(directory, "fixtures")
    bless = os.environ.get("BLESS", "") not in ("", "0")
    cases = sorted(name for name in os.listdir(fixtures)
                   if name.endswith(".json") and not name.endswith(".rows.json"))
    if not cases:
        raise AssertionError(f"no fixtures/<case>.json in {fixtures}")
    differences = []
    for name in cases:
        with open(os.path.join(fixtures, name), encoding="utf-8") as file:
            documents = read_documents(file.read())
        actual = render(plugin, documents, host)
        expected_path = os.path.join(fixtures, name[: -len(".json")] + ".rows.json")
        pretty = json.dumps(actual, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        if bless:
            with open(expected_path, "w", encoding="utf-8") as file:
                file.write(pretty)
            continue
        try:
            with open(expected_path, encoding="utf-8") as file:
                expected = json.load(file)
        except (OSError, ValueError):
            expected = None
        if expected != actual:
            differences.append(f"{name}: expected {expected_path}, got:\n{pretty}")
    if differences:
        raise AssertionError(
            f"{len(differences)} golden case(s) differ (run with BLESS=1 to accept):\n"
            + "\n".join(differences))
