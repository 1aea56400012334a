"""The batch-job-aurora plugin kit for Python: columns declared once by path, the same leniency
as the Rust SDK (a missing step or a value of the wrong kind gives NULL, never an error), and
golden tests.

A plugin is a subclass of `TypePlugin` with `type_name`, `version` and `columns`; `app.py`
exports it as a component (`batch-job-aurora plugin build .`). Everything here is plain Python,
so the transform is tested natively (`python3 -m unittest`).

Input paths: the plugin tells the host which paths of a document it reads (`input_paths`: the
path columns plus `extra_paths`, the paths the transform reads in code), and the host hands it
only those, so that it parses a few hundred bytes rather than the whole payload. What is not
declared is missing from the document the plugin gets, so reading it would give NULL where the
whole document had a value. The kit therefore fails such a read loudly, in tests as at run time:
`parsed.text("/data/x")` for an undeclared `/data/x`, or `parsed.data`, raises `UndeclaredRead`
and the document fails with an internal error that names the path. A plugin that declares no
path under `/data`, or `/data` itself, gets whole documents and reads anything.
"""

import json
import math
import os
import re

__all__ = [
    "TEXT", "INT", "FLOAT", "BOOLEAN", "SLACK_CHANNELS", "reference_table",
    "Column", "path", "column", "Document", "Parsed", "Refused", "InvalidDocument",
    "CapabilityFailed", "LookupFailed", "UndeclaredRead", "TypePlugin", "StaticHost",
    "read_documents", "render", "golden",
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


class UndeclaredRead(Exception):
    """The transform read a path its plugin's input paths do not declare. The host would have
    left that path out of the document, so the read would give NULL where the whole document
    has a value: the document fails instead (an internal error), in tests as at run time."""

    def __init__(self, pointer, how=""):
        super().__init__(
            f"reads {pointer}{how}, which this plugin's input paths do not declare "
            "(add it to extra_paths)")
        self.pointer = pointer


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


_BAD_ESCAPE = re.compile(r"~(?![01])")


def _check_pointer(pointer):
    """A declared path as the host takes it, or ValueError naming it: `""` (the whole
    document), or a JSON Pointer under `/data`, or `/id` or `/timestamp`."""
    if not isinstance(pointer, str):
        raise ValueError(f"input path {pointer!r} is not a string (a JSON Pointer such as "
                         "\"/data/a/b\")")
    if pointer and not pointer.startswith("/"):
        raise ValueError(f"input path {pointer!r} is not a JSON Pointer: it must be \"\" or "
                         "start with \"/\" (\"/data/a/b\")")
    if _BAD_ESCAPE.search(pointer):
        raise ValueError(f"input path {pointer!r} is not a JSON Pointer: `~` must be `~0` (~) "
                         "or `~1` (/)")
    steps = _steps(pointer)
    if steps and steps[0] in ("id", "timestamp") and len(steps) > 1:
        raise ValueError(f"input path {pointer!r} points inside /{steps[0]}, which is a "
                         "scalar")
    if steps and steps[0] not in ("data", "id", "timestamp"):
        # The envelope has nothing else; the host refuses such a path.
        raise ValueError(f"input path {pointer!r} is not under /data, /id or /timestamp")


def _steps(pointer):
    """The steps of a JSON Pointer, unescaped: `""` has none, `/a~1b/c` has `a/b` and `c`."""
    if not pointer:
        return []
    return [step.replace("~1", "/").replace("~0", "~") for step in pointer[1:].split("/")]


# Given whatever the plugin declares: the envelope outside `data`.
_ALWAYS_GIVEN = ("/id", "/timestamp")


def _whole(steps):
    """Whether a declared path asks for the whole payload: the root or `/data`."""
    return steps == [] or steps == ["data"]


def _under_data(steps):
    return len(steps) >= 2 and steps[0] == "data"


def _projected_lone_surrogate(value, paths):
    """Whether what the host hands the plugin of `value` (the part the steps `paths` want, as
    the host projects it) has a lone surrogate: a native test then fails a document where the
    host would, and not for a string the host leaves out."""
    if any(not steps for steps in paths):
        return _has_lone_surrogate(value)
    if isinstance(value, dict):
        kept_any, placeholder = False, None
        for key, member in value.items():
            wanted = [steps[1:] for steps in paths if steps[0] in ("*", key)]
            # A key the host cannot decode (a lone surrogate) is never wanted.
            if wanted and not _has_lone_surrogate(key):
                kept_any = True
                if _projected_lone_surrogate(member, wanted):
                    return True
            elif placeholder is None:
                placeholder = key
        # An object that keeps none of its members keeps its first key, so that it stays
        # non-empty.
        return not kept_any and placeholder is not None and _has_lone_surrogate(placeholder)
    if isinstance(value, list):
        for index, element in enumerate(value):
            # An element not wanted is kept as 0, so that the array keeps its length.
            wanted = [steps[1:] for steps in paths if steps[0] in ("*", str(index))]
            if wanted and _projected_lone_surrogate(element, wanted):
                return True
        return False
    return _has_lone_surrogate(value)


def _covers(declared, steps):
    """Whether a declared path (its steps) gives the value at `steps` whole: it is a step-wise
    prefix of them, a declared `*` matching any one step. A shorter pointer is not covered: the
    value at `/data/a` when only `/data/a/b` is declared holds `b` alone."""
    if len(declared) > len(steps):
        return False
    return all(d == "*" or d == s for d, s in zip(declared, steps))


class _Declared:
    """A plugin's input paths, split once, with what each pointer read so far made of them (a
    transform reads the same few pointers in every document)."""

    _REMEMBERED = 4096

    def __init__(self, paths):
        self.steps = [_steps(p) for p in paths]
        # The same, from `data` on: what the host keeps of it.
        self.data_steps = [s[1:] for s in self.steps if s[:1] == ["data"]]
        self._covered = {}

    def covers(self, pointer):
        covered = self._covered.get(pointer)
        if covered is None:
            covered = pointer.startswith("/") and any(
                _covers(declared, _steps(pointer)) for declared in self.steps)
            if len(self._covered) < self._REMEMBERED:
                self._covered[pointer] = covered
        return covered


class Parsed:
    """A document with its data parsed once. A repeated key keeps its last value.

    `declared` is the plugin's input paths (`TypePlugin.input_paths()`): with them, reading a
    path they do not cover raises `UndeclaredRead`, as does `data`. None (the default) reads
    anything."""

    def __init__(self, document, declared=None):
        self.document = document
        if declared is not None and not isinstance(declared, _Declared):
            declared = _Declared(declared)
        if declared is not None and any(_whole(steps) for steps in declared.steps):
            declared = None
        self._declared = declared
        # The first undeclared read, kept so that a transform that catches it still fails.
        self._undeclared_read = None
        try:
            self._data = json.loads(document.data, parse_constant=_no_constants)
        except ValueError as error:
            raise InvalidDocument(f"data is not valid JSON: {error}") from None
        if _SURROGATE_ESCAPE.search(document.data) and (
                _has_lone_surrogate(self._data) if declared is None
                else _projected_lone_surrogate(self._data, declared.data_steps)):
            raise InvalidDocument(
                "data is not valid: a lone surrogate escape (\\uD800 to \\uDFFF without its "
                "pair); JSON text must be valid Unicode"
            )

    def _undeclared(self, pointer, how=""):
        error = UndeclaredRead(pointer, how)
        if self._undeclared_read is None:
            self._undeclared_read = error
        return error

    @property
    def data(self):
        """The parsed `data`, whole. Only for a plugin that declares no input paths: with them,
        the host hands the plugin part of the document, so read single paths instead."""
        if self._declared is not None:
            raise self._undeclared("/data", " (parsed.data)")
        return self._data

    def pointer(self, pointer):
        """The raw value at a JSON Pointer from the envelope, or None if a step is missing.
        Raises `UndeclaredRead` when the plugin's input paths do not cover `pointer`."""
        if pointer == "/id":
            return self.document.id
        if pointer == "/timestamp":
            return self.document.timestamp
        if self._declared is not None and not self._declared.covers(pointer):
            raise self._undeclared(pointer)
        if pointer == "/data":
            return self._data
        if not pointer.startswith("/data/"):
            return None
        value = self._data
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

    A transform that reads paths in code (`parsed.text("/data/a")`) lists them in
    `extra_paths`: the host hands the plugin only the paths of its columns and these, and a
    read of any other path raises `UndeclaredRead` (the document fails).
    """

    type_name = None
    version = "0.1.0"
    columns = []
    # JSON Pointers the transform reads in code, beyond the path columns. `*` is any one step
    # (`/data/items/*/name`); `/data` is the whole payload.
    extra_paths = []
    capabilities = []

    def input_paths(self):
        """The paths the host hands this plugin (sorted, each once), or None for whole
        documents: the pointers of the path columns and `extra_paths`, without `/id` and
        `/timestamp` (always given). None when no path is under `/data`, or one is `/data`
        (or `""`) itself."""
        declared = [c.pointer for c in self.columns if c.pointer is not None]
        declared += list(self.extra_paths)
        for pointer in declared:
            _check_pointer(pointer)
        steps = [_steps(pointer) for pointer in declared]
        if any(_whole(s) for s in steps) or not any(_under_data(s) for s in steps):
            return None
        return sorted(set(declared) - set(_ALWAYS_GIVEN))

    def _declared(self):
        """`input_paths()` made ready for `Parsed`, worked out again only when the columns or
        `extra_paths` change (`outcome` runs for every document)."""
        key = (tuple(c.pointer for c in self.columns), tuple(self.extra_paths))
        cached = self.__dict__.get("_declared_cache")
        if cached is None or cached[0] != key:
            paths = self.input_paths()
            cached = (key, None if paths is None else _Declared(paths))
            self._declared_cache = cached
        return cached[1]

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
        "internal". A read of an undeclared path fails the document as internal, even when
        the transform caught the `UndeclaredRead`."""
        parsed = None
        try:
            parsed = Parsed(document, declared=self._declared())
            result = self.transform(parsed, host)
            if parsed._undeclared_read is not None:
                raise parsed._undeclared_read
            if isinstance(result, Refused):
                return ("refused", result.reason)
            if isinstance(result, dict):
                return ("rows", [(None, self.values(result))])
            return ("rows", [(row_id, self.values(row)) for row_id, row in result])
        except Exception as error:  # one bad document never fails its neighbours
            if parsed is not None and parsed._undeclared_read is not None:
                # Whatever the transform made of the NULL it would have read on the host.
                return ("failed", ("internal", str(parsed._undeclared_read)))
            if isinstance(error, InvalidDocument):
                return ("failed", ("invalid-document", str(error)))
            if isinstance(error, (CapabilityFailed, LookupFailed)):
                return ("failed", ("capability-failed", str(error)))
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
