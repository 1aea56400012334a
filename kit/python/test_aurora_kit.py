"""Tests of the kit itself (not copied into a new project, whose test_plugin.py tests its plugin).
Run from kit/python: `python3 -m unittest test_aurora_kit` (plain discovery would also find
test_plugin.py, which needs a project's plugin.py)."""

import json
import unittest

from aurora_kit import (INT, TEXT, Document, InvalidDocument, Parsed, Refused, StaticHost,
                        TypePlugin, UndeclaredRead, column, path, render)


def document(data, id="doc-1", timestamp=7):
    return Document(id, timestamp, json.dumps(data))


class Declared(TypePlugin):
    type_name = "Declared"
    columns = [
        path("name", TEXT, "/data/repository/full_name"),
        path("doc_id", TEXT, "/id"),
        path("at", INT, "/timestamp"),
        column("computed", TEXT),
    ]
    extra_paths = ["/data/action", "/data/commits/*/author", "/data/action"]


class InputPaths(unittest.TestCase):
    def paths(self, columns, extra_paths=()):
        plugin = type("P", (TypePlugin,), {"type_name": "P", "columns": columns,
                                           "extra_paths": list(extra_paths)})()
        return plugin.input_paths()

    def test_columns_and_extras_sorted_once_without_id_and_timestamp(self):
        self.assertEqual(Declared().input_paths(),
                         ["/data/action", "/data/commits/*/author", "/data/repository/full_name"])

    def test_id_and_timestamp_listed_as_extras_are_dropped(self):
        self.assertEqual(self.paths([path("a", TEXT, "/data/a")], ["/id", "/timestamp"]),
                         ["/data/a"])

    def test_no_path_under_data_is_the_whole_document(self):
        self.assertIsNone(self.paths([]))
        self.assertIsNone(self.paths([column("c", TEXT)]))
        self.assertIsNone(self.paths([path("i", TEXT, "/id"), path("t", INT, "/timestamp")]))

    def test_data_itself_or_the_root_is_the_whole_document(self):
        self.assertIsNone(self.paths([path("a", TEXT, "/data/a")], ["/data"]))
        self.assertIsNone(self.paths([path("a", TEXT, "/data/a")], [""]))
        self.assertIsNone(self.paths([path("a", TEXT, "/data")]))

    def test_a_pointer_that_is_not_one_is_refused_by_name(self):
        # As the host refuses them: nothing but `data`, `id` and `timestamp` is in the envelope.
        for bad in ["data/a", "a", "/data/a~2b", 7, "/foo", "/*", "/*/a", "/id/x"]:
            with self.subTest(bad=bad):
                with self.assertRaises(ValueError) as caught:
                    self.paths([path("a", TEXT, "/data/a")], [bad])
                self.assertIn(repr(bad), str(caught.exception))

    def test_escapes_are_kept_as_written(self):
        self.assertEqual(self.paths([path("a", TEXT, "/data/a~1b/c~0d")]), ["/data/a~1b/c~0d"])


class Reads(unittest.TestCase):
    DATA = {"a": {"b": {"c": 1}, "x": 2}, "list": [{"n": "first"}, {"n": "second"}],
            "a/b": "slash", "t~": "tilde"}

    def parsed(self, declared):
        return Parsed(document(self.DATA), declared=declared)

    def test_without_declared_paths_everything_reads(self):
        parsed = Parsed(document(self.DATA))
        self.assertEqual(parsed.pointer("/data/a/x"), 2)
        self.assertEqual(parsed.pointer("/data"), self.DATA)
        self.assertEqual(parsed.data, self.DATA)

    def test_declaring_data_itself_reads_everything(self):
        parsed = self.parsed(["/data/a/b", "/data"])
        self.assertEqual(parsed.pointer("/data/list/0/n"), "first")
        self.assertEqual(parsed.data, self.DATA)

    def test_a_declared_path_and_what_is_under_it_read(self):
        parsed = self.parsed(["/data/a/b"])
        self.assertEqual(parsed.pointer("/data/a/b"), {"c": 1})
        self.assertEqual(parsed.int("/data/a/b/c"), 1)
        self.assertIsNone(parsed.pointer("/data/a/b/missing"))

    def test_id_and_timestamp_always_read(self):
        parsed = self.parsed(["/data/a/b"])
        self.assertEqual(parsed.text("/id"), "doc-1")
        self.assertEqual(parsed.int("/timestamp"), 7)

    def test_an_undeclared_path_raises_naming_it(self):
        parsed = self.parsed(["/data/a/b"])
        with self.assertRaises(UndeclaredRead) as caught:
            parsed.int("/data/a/x")
        self.assertEqual(str(caught.exception), "reads /data/a/x, which this plugin's input "
                                                "paths do not declare (add it to extra_paths)")

    def test_a_pointer_shorter_than_a_declared_path_is_not_covered(self):
        # The host's value of /data/a holds b alone.
        parsed = self.parsed(["/data/a/b"])
        for pointer in ["/data/a", "/data", ""]:
            with self.subTest(pointer=pointer):
                with self.assertRaises(UndeclaredRead):
                    parsed.pointer(pointer)

    def test_a_star_matches_any_one_step(self):
        parsed = self.parsed(["/data/list/*/n"])
        self.assertEqual(parsed.text("/data/list/0/n"), "first")
        self.assertEqual(parsed.text("/data/list/1/n"), "second")
        self.assertIsNone(parsed.text("/data/list/5/n"))
        with self.assertRaises(UndeclaredRead):
            parsed.pointer("/data/list/0")
        with self.assertRaises(UndeclaredRead):
            parsed.pointer("/data/a/n")

    def test_escaped_steps_compare_unescaped(self):
        parsed = self.parsed(["/data/a~1b", "/data/t~0"])
        self.assertEqual(parsed.text("/data/a~1b"), "slash")
        self.assertEqual(parsed.text("/data/t~0"), "tilde")
        with self.assertRaises(UndeclaredRead):
            parsed.pointer("/data/a/b")

    def test_the_whole_data_raises_when_paths_are_declared(self):
        parsed = self.parsed(["/data/a/b"])
        with self.assertRaises(UndeclaredRead) as caught:
            parsed.data
        self.assertIn("/data", str(caught.exception))
        self.assertIn("extra_paths", str(caught.exception))


class LoneSurrogates(unittest.TestCase):
    """A lone surrogate escape fails a document where the plugin gets it: natively, only when it
    is in what the host would hand the plugin."""

    def outcome(self, text, columns, extra_paths=()):
        plugin = type("P", (TypePlugin,), {"type_name": "P", "columns": columns,
                                           "extra_paths": list(extra_paths)})()
        return plugin.outcome(Document("doc-1", 7, text), StaticHost())

    def failed(self, text, columns, extra_paths=()):
        kind, detail = self.outcome(text, columns, extra_paths)
        return kind == "failed" and detail[0] == "invalid-document"

    def test_in_a_declared_value(self):
        self.assertTrue(self.failed('{"a": "\\ud800"}', [path("a", TEXT, "/data/a")]))
        self.assertTrue(self.failed('{"a": {"b": ["\\ud800"]}}', [path("a", TEXT, "/data/a")]))

    def test_outside_what_is_declared(self):
        self.assertEqual(self.outcome('{"a": "x", "b": "\\ud800"}', [path("a", TEXT, "/data/a")]),
                         ("rows", [(None, ["x"])]))
        self.assertFalse(self.failed('{"l": [{"n": "x"}, "\\ud800"]}',
                                     [path("n", TEXT, "/data/l/0/n")]))
        self.assertTrue(self.failed('{"l": [{"n": "x"}, "\\ud800"]}',
                                    [path("n", TEXT, "/data/l/0/n")], ["/data/l/*"]))

    def test_on_the_way_to_a_declared_path(self):
        # A string where an object was expected is handed whole.
        self.assertTrue(self.failed('{"a": "\\ud800"}', [path("b", TEXT, "/data/a/b")]))
        # An object that keeps none of its members keeps its first key.
        self.assertTrue(self.failed('{"\\ud800": 1}', [path("a", TEXT, "/data/a")]))
        self.assertFalse(self.failed('{"x": 1, "\\ud800": 1}', [path("a", TEXT, "/data/a")]))

    def test_whole_documents_check_everything(self):
        self.assertTrue(self.failed('{"a": "x", "b": "\\ud800"}', [path("a", TEXT, "/data/a")],
                                    ["/data"]))


class Outcomes(unittest.TestCase):
    def test_declared_reads_give_rows(self):
        class Plugin(Declared):
            def transform(self, parsed, host):
                if parsed.text("/data/action") != "push":
                    return Refused("not a push")
                authors = [parsed.text(f"/data/commits/{i}/author") for i in range(2)]
                return self.row(parsed, computed=",".join(a or "?" for a in authors))

        data = {"action": "push", "repository": {"full_name": "o/r"},
                "commits": [{"author": "ann"}, {"author": "bob"}]}
        self.assertEqual(Plugin().outcome(document(data), StaticHost()),
                         ("rows", [(None, ["o/r", "doc-1", 7, "ann,bob"])]))

    def test_an_undeclared_read_fails_the_document_as_internal(self):
        class Plugin(Declared):
            def transform(self, parsed, host):
                return self.row(parsed, computed=parsed.text("/data/sender/login"))

        self.assertEqual(Plugin().outcome(document({"sender": {"login": "ann"}}), StaticHost()),
                         ("failed", ("internal", "reads /data/sender/login, which this plugin's "
                                                 "input paths do not declare (add it to "
                                                 "extra_paths)")))

    def test_a_caught_undeclared_read_still_fails_the_document(self):
        class Swallows(Declared):
            def transform(self, parsed, host):
                try:
                    login = parsed.text("/data/sender/login")
                except Exception:
                    login = None
                if login is None:
                    raise InvalidDocument("no login")
                return self.row(parsed, computed=login)

        class Refuses(Declared):
            def transform(self, parsed, host):
                try:
                    parsed.data
                except Exception:
                    pass
                return Refused("whatever")

        for plugin in [Swallows(), Refuses()]:
            with self.subTest(plugin=type(plugin).__name__):
                kind, (error_kind, message) = plugin.outcome(document({}), StaticHost())
                self.assertEqual((kind, error_kind), ("failed", "internal"))
                self.assertIn("do not declare", message)

    def test_whole_documents_read_anything(self):
        class Whole(TypePlugin):
            type_name = "Whole"
            columns = [column("keys", INT)]
            extra_paths = ["/data"]

            def transform(self, parsed, host):
                return self.row(parsed, keys=len(parsed.data))

        self.assertIsNone(Whole().input_paths())
        self.assertEqual(Whole().outcome(document({"a": 1, "b": 2}), StaticHost()),
                         ("rows", [(None, [2])]))

    def test_render_reports_the_undeclared_read(self):
        class Plugin(Declared):
            def transform(self, parsed, host):
                return self.row(parsed, computed=parsed.text("/data/other"))

        report = render(Plugin(), [document({"other": "x"})], StaticHost())
        self.assertEqual(report["failed"], [{
            "id": "doc-1", "stage": "plugin",
            "error": "internal error: reads /data/other, which this plugin's input paths do not "
                     "declare (add it to extra_paths)"}])

    def test_paths_changed_after_a_document_are_used_for_the_next(self):
        plugin = Declared()
        plugin.extra_paths = ["/data/action"]
        self.assertEqual(plugin.outcome(document({}), StaticHost())[0], "rows")
        plugin.columns = [path("other", TEXT, "/data/other")]
        self.assertEqual(plugin.input_paths(), ["/data/action", "/data/other"])
        self.assertEqual(plugin.outcome(document({"other": "x"}), StaticHost()),
                         ("rows", [(None, ["x"])]))

    def test_a_bad_declared_path_fails_every_document_by_name(self):
        class Bad(TypePlugin):
            type_name = "Bad"
            columns = [path("a", TEXT, "data/a")]

        kind, (error_kind, message) = Bad().outcome(document({"a": "x"}), StaticHost())
        self.assertEqual((kind, error_kind), ("failed", "internal"))
        self.assertIn("'data/a'", message)


if __name__ == "__main__":
    unittest.main()
