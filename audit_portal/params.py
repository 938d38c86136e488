"""Query-string rules every page and endpoint shares."""

from __future__ import annotations

from werkzeug.datastructures import MultiDict


def repeated_parameters(args: MultiDict) -> dict[str, list[str]]:
    """An error for each query parameter given more than once: no parameter takes a list, so keeping one of
    the values and dropping the others would be a silent ignore."""
    return {key: [f"Give {key} once; it was given {len(args.getlist(key))} times."]
            for key in sorted(args) if len(args.getlist(key)) > 1}
