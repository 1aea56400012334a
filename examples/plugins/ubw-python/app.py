"""The component's entry point: componentize-py exports the `Plugin` class of this module (the
`plugin` interface: describe, transform) and the `Input` class (the `input` interface: the paths
the plugin reads). Nothing to change here; the plugin itself is in plugin.py."""

from wit_world import exports

from aurora_kit import wit
from plugin import PLUGIN


class Plugin(exports.Plugin):
    def describe(self):
        return wit.describe(PLUGIN)

    def transform(self, batch):
        return wit.transform(PLUGIN, batch)


class Input(exports.Input):
    def input_paths(self):
        return wit.input_paths(PLUGIN)
