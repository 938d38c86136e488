"""Query-string rules every page and endpoint shares: the base schema of every query-string schema, and no
parameter given twice."""

from __future__ import annotations

from marshmallow import RAISE, Schema
from werkzeug.datastructures import MultiDict


class QueryArgsSchema(Schema):
    """The base of every query-string schema: an unknown parameter is refused, naming those that are accepted
    (a typo'd parameter is then easy to fix, and never silently ignored)."""

    class Meta:
        unknown = RAISE

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.error_messages = {**self.error_messages,
                               "unknown": f"Unknown parameter; the parameters are: {', '.join(self.load_fields)}."}


def repeated_parameters(args: MultiDict) -> dict[str, list[str]]:
    """An error for each query parameter given more than once: no parameter takes a list, so keeping one of
    the values and dropping the others would be a silent ignore."""
    return {key: [f"Give {key} once; it was given {len(args.getlist(key))} times."]
            for key in sorted(args) if len(args.getlist(key)) > 1}
