"""The glue between a `TypePlugin` and the component's WIT interface (`aurora:plugin`). Only
imported inside the component, where componentize-py provides `wit_world`."""

import json

from componentize_py_types import Err
from wit_world.imports import host as wit_host
from wit_world.imports import types

from . import BOOLEAN, FLOAT, INT, TEXT, LookupFailed, Document

_KINDS = {
    TEXT: types.ColumnType.TEXT,
    INT: types.ColumnType.INT,
    FLOAT: types.ColumnType.FLOAT,
    BOOLEAN: types.ColumnType.BOOLEAN,
}

_VALUES = {TEXT: types.Value_Text, INT: types.Value_Int, FLOAT: types.Value_Float,
           BOOLEAN: types.Value_Boolean}

_ERRORS = {
    "invalid-document": types.PluginError_InvalidDocument,
    "capability-failed": types.PluginError_CapabilityFailed,
    "internal": types.PluginError_Internal,
}


def _capability(capability):
    if capability[0] == "slack-channels":
        return types.Capability_SlackChannels()
    return types.Capability_ReferenceTable(capability[1])


def _lookup_failed(error):
    value = error.value
    if isinstance(value, wit_host.LookupError_Denied):
        return LookupFailed("denied")
    if isinstance(value, wit_host.LookupError_NotConfigured):
        return LookupFailed("not-configured", value.value)
    return LookupFailed("unavailable", getattr(value, "value", ""))


class WasmHost:
    """The host as seen from inside the component."""

    def log(self, level, message):
        levels = {"debug": wit_host.LogLevel.DEBUG, "info": wit_host.LogLevel.INFO,
                  "warn": wit_host.LogLevel.WARN, "error": wit_host.LogLevel.ERROR}
        wit_host.log(levels.get(level, wit_host.LogLevel.INFO), str(message))

    def slack_channel(self, channel_id):
        try:
            channel = wit_host.lookup_slack_channel(channel_id)
        except Err as error:
            raise _lookup_failed(error) from None
        return None if channel is None else channel.name

    def reference_lookup(self, table, key):
        try:
            items = wit_host.reference_lookup(table, key)
        except Err as error:
            raise _lookup_failed(error) from None
        return [json.loads(item) for item in items]


def describe(plugin):
    return types.PluginInfo(
        type_name=plugin.type_name,
        version=plugin.version,
        columns=[types.Column(name=c.name, kind=_KINDS[c.kind]) for c in plugin.columns],
        capabilities=[_capability(c) for c in plugin.capabilities],
    )


def input_paths(plugin):
    """The paths of each document the host hands the plugin (a list of JSON Pointers), or None
    for whole documents: `option<list<string>>` of the `input` interface."""
    return plugin.input_paths()


def _value(kind, value):
    return types.Value_Null() if value is None else _VALUES[kind](value)


def transform(plugin, batch):
    host = WasmHost()
    outcomes = []
    for document in batch:
        kind, detail = plugin.outcome(Document(document.id, document.timestamp, document.data), host)
        if kind == "rows":
            outcomes.append(types.Outcome_Rows([
                types.Row(id=row_id,
                          values=[_value(c.kind, v) for c, v in zip(plugin.columns, cells)])
                for row_id, cells in detail
            ]))
        elif kind == "refused":
            outcomes.append(types.Outcome_Refused(detail))
        else:
            error_kind, message = detail
            outcomes.append(types.Outcome_Failed(_ERRORS[error_kind](message)))
    return outcomes
