"""The API items of a JSON or NDJSON export, written as JSON text by PostgreSQL (``export.py`` streams them).

Building an item in Python (an ORM object, a marshmallow dump, ``json.dumps``) is what made these exports thirteen
times slower than the CSV one. PostgreSQL writes the item's text in C instead, as it writes the CSV lines, and the
text is byte for byte what the Python path prints (``AuditLogSchema`` dumped by ``json.dumps(item,
ensure_ascii=False)``), which ``tests/audit/read/test_export_items.py`` checks on awkward values:

- the schema's keys in its order (read from the schema), with Python's separators ``", "`` and ``": "`` written
  here: ``json_build_object`` writes ``" : "``, and jsonb would reorder the keys;
- text through ``to_json``, which escapes as Python does without ASCII escaping: ``\\" \\\\ \\b \\f \\n \\r \\t``,
  other characters below U+0020 as ``\\u00XX`` in lower case, every other character (U+2028, emoji) as it is;
- the timestamp as ``isoformat()`` prints it: UTC, ``+00:00``, the microseconds only when they are not 0;
- numbers and booleans as text, NULL as ``null``; the computed fields from ``presentation``'s tables and rules;
- metadata (JSONB) as PostgreSQL prints it. The Python path parses that very text and prints it again: the same
  escaping, separators, key order (jsonb's) and integers, but not always the same numbers with a fraction (jsonb
  prints ``0.00001`` where Python prints ``1e-05``), and some values Python does not print at all (metadata that is
  not an object; an integer of more than 4,300 digits). So ``exact_items`` lets Python print the metadata of the
  items whose metadata has a ``.`` in a number or could hold such a value: the rare ones.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Iterator

from marshmallow import fields
from sqlalchemy import String, Text, case, cast, func, literal, or_, select, type_coerce

from ...serving import heartbeat
from ..record import presentation
from ..record.enums import Category
from ..record.models import AuditLog
from .erased import ErasableString, shown_column
from .fields import CaseInsensitiveEnum
from .query import AuditFilters, ordered
from .schemas import AuditLogSchema

#: Items per batch read, and so per chunk sent (about 2 MB of text).
ITEM_BATCH = 2000

_schema = AuditLogSchema()
_table = AuditLog.__table__
_ISO_UTC = 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'
#: Text whose values are an enum's (besides the schema's enum fields): written between quotes as they are.
_ENUM_TEXT = {"category": Category}


def _text(value):
    return type_coerce(value, String)


def _or_null(json_text):
    return func.coalesce(_text(json_text), literal("null", String), type_=String)


def _escaped(value):
    return _text(cast(func.to_json(value), Text))


def _json_string(value):
    """The JSON string of a text (escaped by PostgreSQL), or null."""
    return _or_null(_escaped(value))


def _enum_string(column, values: list[str]) -> list:
    """A NOT NULL text that holds an enum's values: those need no escaping (and ``to_json`` is the costly part of an
    item), so they go between quotes as they are; any other value is escaped."""
    escaped = _escaped(column)
    inside = func.substr(escaped, 2, func.length(escaped) - 2, type_=String)
    return ['"', case((column.in_(values), _text(column)), else_=inside), '"']


def _colours(column, colours: dict, default: str | None):
    """``presentation``'s colour of a status or severity, as JSON."""
    whens = {str(value): json.dumps(colour) for value, colour in colours.items()}
    return case(whens, value=column, else_=literal(json.dumps(default), String))


def _actor():
    """``presentation.actor_name``: the username (or "[erased]"), else "user #<id>", else "anonymous"."""
    c = _table.c
    return func.coalesce(func.nullif(shown_column("username"), ""),
                         literal("user #", String) + cast(func.nullif(c.user_id, 0), Text),
                         literal("anonymous", String), type_=String)


def _actor_json():
    """The actor as JSON: only a username needs escaping."""
    c = _table.c
    number = literal('"user #', String) + cast(c.user_id, Text) + literal('"', String)
    username = shown_column("username")
    return case((username != "", _escaped(username)), (c.user_id != 0, number),
                else_=literal('"anonymous"', String))


def _readable_description():
    """``presentation.readable_description``: the description (else "<action> on <resource>"), prefixed with the
    actor unless it starts with the actor's name."""
    c = _table.c
    text = func.coalesce(func.nullif(c.description, ""), c.action_type + literal(" on ", String) + c.resource_type,
                         type_=String)
    actor = _actor()
    return case((func.starts_with(text, actor), text), else_=actor + literal(": ", String) + text)


_COMPUTED = {
    "status_color": lambda: [_colours(_table.c.status, presentation.STATUS_COLOURS, "grey")],
    "severity_color": lambda: [_colours(_table.c.severity, presentation.SEVERITY_COLOURS, None)],
    "readable_description": lambda: [_json_string(_readable_description())],
    "actor": lambda: [_actor_json()],
}


def _value(name: str, field) -> list:
    """The pieces of one field's JSON value: SQL expressions, and strings for the text around them."""
    if isinstance(field, fields.Function):
        return _COMPUTED[name]()
    column = AuditLog.__mapper__.attrs[field.attribute or name].columns[0]
    if isinstance(field, fields.Dict):
        return [_or_null(cast(column, Text))]
    if isinstance(field, fields.DateTime) and field.format == "iso":
        iso = func.replace(func.to_char(func.timezone("UTC", column), _ISO_UTC), ".000000+", "+", type_=String)
        return ['"', iso, '"']  # NOT NULL
    if isinstance(field, fields.Boolean):
        return [case((column.is_(True), literal("true", String)), (column.is_(False), literal("false", String)),
                     else_=literal("null", String))]
    if isinstance(field, fields.Integer):
        return [_or_null(cast(column, Text))]
    enum = field.enum_cls if isinstance(field, CaseInsensitiveEnum) else _ENUM_TEXT.get(name)
    if isinstance(field, fields.String) and enum is not None and not column.nullable:
        return _enum_string(column, enum.values())
    if isinstance(field, ErasableString):
        return [_json_string(shown_column(column.name))]
    if isinstance(field, fields.String):
        return [_json_string(column)]
    raise TypeError(f"no SQL for the export item field {name!r} ({type(field).__name__})")


def _merged_pieces() -> list:
    """The item's pieces in order, neighbouring strings merged."""
    pieces = []
    for i, (name, field) in enumerate(_schema.dump_fields.items()):
        for piece in [("{" if i == 0 else ", ") + json.dumps(field.data_key or name) + ": ", *_value(name, field)]:
            if isinstance(piece, str) and pieces and isinstance(pieces[-1], str):
                pieces[-1] += piece
            else:
                pieces.append(piece)
    return [*pieces[:-1], pieces[-1] + "}"] if isinstance(pieces[-1], str) else [*pieces, "}"]


#: An item whose metadata Python prints itself starts with this instead of "{" (``exact_items``).
_REPRINT = "!"


def _reprint_flag():
    """Metadata whose text Python might print otherwise: not an object, or a "." somewhere (a number with a
    fraction, or only a string with a dot)."""
    metadata = _table.c.metadata
    return or_(func.jsonb_typeof(metadata).not_in(["object", "null"]), func.strpos(cast(metadata, Text), ".") > 0)


@functools.cache
def _item():
    """The item expression, built once (a few hundred SQL nodes): ``a || b || ...`` grouped as a balanced tree, as
    each ``||`` copies its operands and a left-leaning chain of fifty would copy the start of the item fifty times."""
    first, *rest = _merged_pieces()
    parts = [case((_reprint_flag(), literal(_REPRINT + first, String)), else_=literal(first, String)),
             *(literal(p, String) if isinstance(p, str) else p for p in rest)]
    while len(parts) > 1:
        pairs = [_text(parts[i] + parts[i + 1]).self_group() for i in range(0, len(parts) - 1, 2)]
        parts = pairs + parts[len(parts) - len(parts) % 2:]
    return parts[0].label("item")


def item_select(filters: AuditFilters):
    """One column: the JSON text of each matching event's API item (``exact_items`` finishes it), newest first
    (PostgreSQL)."""
    query = ordered(select(_item()).select_from(_table), filters)
    return query.execution_options(stream_results=True, yield_per=ITEM_BATCH)


# -- the rare metadata Python prints itself ------------------------------------------------------------------------

_METADATA_KEY = ', "metadata": '
#: The key after metadata: its last occurrence in an item is the item's own (keys inside metadata come before it,
#: and no escaped string holds ``, "`` with an unescaped quote).
_KEYS = list(_schema.dump_fields)
_NEXT_KEY = ", " + json.dumps(_KEYS[_KEYS.index("metadata") + 1]) + ": "
#: A number with a fraction in jsonb's text (after "[", ": " or ", "); a "." inside a string may match too, which
#: only costs a needless reprint.
_FRACTION = re.compile(r"[\[ ]-?[0-9]+\.")
_MAX_DIGITS = sys.get_int_max_str_digits() or sys.maxsize


def _python_metadata(text: str) -> str:
    """What the Python path prints for this metadata text: it reads jsonb's text with ``json.loads``."""
    field = _schema.dump_fields["metadata"]
    return json.dumps(field.serialize("metadata", {"event_metadata": json.loads(text)}), ensure_ascii=False)


def _exact(item: str) -> str:
    """A flagged or long item, its metadata printed by Python where PostgreSQL's text might differ."""
    item = item.removeprefix(_REPRINT)
    start = item.index(_METADATA_KEY) + len(_METADATA_KEY)
    end = item.rindex(_NEXT_KEY)
    text = item[start:end]
    if text[0] in "{n" and len(text) <= _MAX_DIGITS and not ("." in text and _FRACTION.search(text)):
        return item
    return item[:start] + _python_metadata(text) + item[end:]


def exact_items(batches: Iterator[list[str]]) -> Iterator[list[str]]:
    """The batches of ``item_select``'s rows, finished. Python looks only at the items flagged by the query and at
    those long enough to hold an integer Python refuses to read."""
    for items in batches:
        yield [item if item[0] == "{" and len(item) <= _MAX_DIGITS else _exact(item) for item in items]
        heartbeat()
