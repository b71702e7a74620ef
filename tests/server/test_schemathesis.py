"""Schemathesis against ``/openapi.json``: requests generated from the document (valid
ones and, as schemathesis makes them, invalid ones), sent to a server on loopback.
Every answer must be documented (status, media type, body shape) and none a 5xx.

(Each operation is its own test, parametrized from the document the app builds;
schemathesis' own pytest loader does not work with pytest 9, so the cases come
from its Hypothesis strategies.)"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import tidal
from tidal.server import create_app, openapi

from .conftest import Served, serving

# Streams never end by themselves: their shapes are tested in test_live_stream.
ENDLESS = ("/v1/correlations/stream", "/v1/correlations/ws")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def _schema() -> schemathesis.BaseSchema:
    with tidal.open() as store:
        doc = openapi.document(create_app(store).routes, version=tidal.__version__)
    return schemathesis.openapi.from_dict(doc).exclude(path=list(ENDLESS))


SCHEMA = _schema()
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    """A server over a store holding a few events and one rule."""
    with tidal.open(tmp_path_factory.mktemp("st") / "store") as store:
        store.append([{"timestamp": f"2026-01-01T00:00:{i:02d}Z", "entity": f"pod-{i % 3}",
                       "level": "error" if i % 4 == 0 else "info", "id": i}
                      for i in range(40)])
        store.add_rule("errors", 'any where level == "error"')
        with serving(store) as running:
            yield running


def test_the_document_served_is_the_one_tested(served):
    assert httpx.get(f"{served.url}/openapi.json").json()["paths"].keys() >= {
        op.path for op in OPERATIONS}
    assert len(OPERATIONS) >= 15


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_every_answer_is_documented_and_none_is_a_server_error(served, operation, mode):
    """Valid requests: documented answers. Invalid ones (schemathesis breaks parameters,
    headers and bodies): no 5xx (uvicorn itself answers malformed HTTP in plain text)."""
    invalid = mode == GenerationMode.NEGATIVE
    parts = (operation.path_parameters, operation.headers, operation.query, operation.body)
    if invalid and not any(len(part) for part in parts):
        pytest.skip("nothing in this request to make invalid")
    checks = [not_a_server_error] if invalid else CHECKS

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def answered(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=served.url, checks=checks, timeout=30)

    try:
        answered()
    except Unsatisfiable:  # (a lone string parameter: nothing schemathesis can break)
        assert invalid
        pytest.skip("schemathesis can make no invalid request here")
