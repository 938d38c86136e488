"""Reading ``/metrics`` in tests: the exposition parsed into {(sample name, labels): value}."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def families(text: str) -> set[str]:
    """The family names the exposition declares (``# TYPE`` lines), with or without samples."""
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def value(samples: Samples, name: str, **labels) -> float:
    """A sample's value; 0 when the exposition does not have it (a labelled counter not incremented yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(client, **kwargs) -> Samples:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    return parse(response.get_data(as_text=True))
