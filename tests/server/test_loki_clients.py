"""Grafana's Loki data source and ``logcli``, request by request.

Neither can run here (both are AGPL-licensed Go programs, not packaged), so each
test sends the exact requests they send, with their parameters, encodings and
headers (Grafana: ``pkg/tsdb/loki`` and the data source's front end; logcli:
``pkg/logcli``), and checks what each decodes from the answer."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest

import tidal
from tidal.server import ServerConfig
from tidal.server.config import Token

from .conftest import Served, serving

S = 1_000_000_000
GRAFANA = {"X-Loki-Response-Encoding-Flags": "categorize-labels", "X-Grafana-Org-Id": "1"}
LOGCLI = {"User-Agent": "loki-logcli/3.5.0"}


@pytest.fixture(scope="module")
def loki(tmp_path_factory) -> Iterator[tuple[Served, int]]:
    """The last 10 minutes of two apps' logfmt lines, one a second, pushed as Loki's push
    API takes them; every fifth line an error."""
    now = time.time_ns() // S * S
    t0 = now - 600 * S
    store = tidal.open(tmp_path_factory.mktemp("loki") / "s")
    tokens = (Token("qry", frozenset({"query", "ingest"})),)
    with store, serving(store, ServerConfig(tokens=tokens)) as served:
        streams = []
        for app in ("api", "web"):
            for level in ("info", "error"):
                values = [[str(t0 + i * S), f"level={level} path=/p{i % 7} took={i % 13}ms"]
                          for i in range(600) if (i % 5 == 0) == (level == "error")]
                streams.append({"stream": {"app": app, "level": level}, "values": values})
        got = httpx.post(served.url + "/loki/api/v1/push", json={"streams": streams},
                         headers={"Authorization": "Bearer qry"})
        assert got.status_code == 204, got.text
        yield served, t0


def call(served: Served, path: str, params: list[tuple[str, str]], headers: dict[str, str],
         auth: str = "Bearer qry") -> httpx.Response:
    """GET ``path`` with the parameters in the order the client writes them."""
    url = f"{served.url}/loki/api/v1/{path}?{urlencode(params)}"
    return httpx.get(url, headers={**headers, "Authorization": auth}, timeout=30)


# -- Grafana ----------------------------------------------------------------------------
def test_grafana_save_and_test(loki):
    """Grafana 10.2+: an instant ``vector(1)+vector(1)`` at time=4000000000; the
    check wants one series with one sample equal to 2."""
    served, _ = loki
    got = call(served, "query", [("direction", "backward"), ("query", "vector(1)+vector(1)"),
                                 ("time", "4000000000")], GRAFANA)
    assert got.status_code == 200, got.text
    data = got.json()["data"]
    assert data["resultType"] == "vector"
    [sample] = data["result"]
    assert sample["metric"] == {}
    assert float(sample["value"][1]) == 2.0


def test_grafana_10_1_save_and_test_wants_labels(loki):
    served, _ = loki
    now = time.time_ns()
    got = call(served, "labels", [("end", str(now)), ("start", str(now - 600 * S))], GRAFANA)
    assert got.json()["status"] == "success"
    assert {"app", "level"} <= set(got.json()["data"])


def test_grafana_explore_logs_query(loki):
    served, t0 = loki
    end = t0 + 600 * S
    params = [("direction", "backward"), ("end", str(end)), ("limit", "1000"),
              ("query", '{app="api"} | logfmt | took > 10ms'), ("start", str(end - 3600 * S)),
              ("step", "15000ms")]
    got = call(served, "query_range", params, {**GRAFANA, "X-Query-Tags": "Source=grafana"})
    data = got.json()["data"]
    assert data["resultType"] == "streams"
    # Grafana asked for categorize-labels: streams by stored labels, parsed ones per entry
    assert data["encodingFlags"] == ["categorize-labels"]
    assert sorted(s["stream"]["level"] for s in data["result"]) == ["error", "info"]
    assert all(s["stream"].keys() == {"app", "level"} for s in data["result"])
    entries = [(int(v[0]), v[2]["parsed"]) for s in data["result"] for v in s["values"]]
    expected = [i for i in range(600) if i % 13 > 10]
    assert sorted(ts for ts, _ in entries) == [t0 + i * S for i in expected]
    for ts, parsed in entries:
        i = (ts - t0) // S
        assert parsed == {"level_extracted": "error" if i % 5 == 0 else "info",
                          "path": f"/p{i % 7}", "took": f"{i % 13}ms"}
    plain = call(served, "query_range", params, LOGCLI).json()["data"]  # no flag: as before
    assert "encodingFlags" not in plain
    assert all(len(v) == 2 and s["stream"]["took"].endswith("ms")
               for s in plain["result"] for v in s["values"])


def test_grafana_logs_volume_query(loki):
    """The histogram above the logs: a matrix by level, at the panel's step."""
    served, t0 = loki
    end = t0 + 600 * S
    query = ('sum by (level, detected_level) (count_over_time({app=~"api|web"} '
             "| drop __error__[1m]))")
    params = [("direction", "backward"), ("end", str(end)), ("limit", "1000"),
              ("query", query), ("start", str(t0)), ("step", "60000ms")]
    got = call(served, "query_range", params, {**GRAFANA, "X-Query-Tags": "Source=logvolhist"})
    data = got.json()["data"]
    assert data["resultType"] == "matrix"
    by_level = {s["metric"]["level"]: s["values"] for s in data["result"]}
    assert set(by_level) == {"error", "info"}
    # each full minute (t - 60 s, t] holds 60 lines per app: 12 errors and 48 others
    full = [v for v in by_level["error"] if t0 + 60 * S <= v[0] * S < end]
    assert len(full) == 9 and all(v[1] == "24" for v in full)
    assert all(v[1] == "96" for v in by_level["info"] if t0 + 60 * S <= v[0] * S < end)


def test_grafana_label_browser(loki):
    served, t0 = loki
    window = [("end", str(t0 + 600 * S)), ("start", str(t0))]
    labels = call(served, "labels", [*window, ("query", '{app="web"}')], GRAFANA).json()
    assert labels["data"] == ["app", "level"]
    values = call(served, "label/level/values", [*window, ("query", '{app="web"}')], GRAFANA)
    assert values.json()["data"] == ["error", "info"]
    series = call(served, "series", [("match[]", '{level="error"}'), *window], GRAFANA)
    assert series.json()["data"] == [{"app": "api", "level": "error"},
                                     {"app": "web", "level": "error"}]


def test_grafana_logs_sample_for_a_metric_query(loki):
    served, t0 = loki
    params = [("direction", "backward"), ("end", str(t0 + 600 * S)), ("limit", "100"),
              ("query", '{app="web"}'), ("start", str(t0)), ("step", "15000ms")]
    got = call(served, "query_range", params, {**GRAFANA, "X-Query-Tags": "Source=logsample"})
    values = [v for s in got.json()["data"]["result"] for v in s["values"]]
    assert len(values) == 100
    assert min(int(v[0]) for v in values) == t0 + 500 * S  # the newest 100


# -- logcli -----------------------------------------------------------------------------
def test_logcli_query_pages_backward_in_batches(loki):
    """``logcli query --limit 250 --batch 100``: each batch ends where the last one's
    oldest entry was (+1 ns); together they are the newest 250, none twice."""
    served, t0 = loki
    end, start = t0 + 600 * S, t0 - 3000 * S
    seen: list[int] = []
    while len(seen) < 250:
        params = [("direction", "BACKWARD"), ("end", str(end)),
                  ("limit", str(min(100, 250 - len(seen)))), ("query", '{app="api"}'),
                  ("start", str(start))]
        got = call(served, "query_range", params, LOGCLI)
        assert got.status_code == 200, got.text
        batch = sorted((int(v[0]) for s in got.json()["data"]["result"] for v in s["values"]),
                       reverse=True)
        assert batch
        seen += batch
        end = batch[-1]  # logcli: the oldest timestamp seen; it skips entries already seen
    assert seen == [t0 + i * S for i in range(599, 349, -1)]


def test_logcli_instant_query_and_float_second_steps(loki):
    served, t0 = loki
    got = call(served, "query", [("direction", "BACKWARD"), ("limit", "30"),
                                 ("query", 'sum by (app) (count_over_time({level="error"}[1m]))'),
                                 ("time", str(t0 + 599 * S))], LOGCLI).json()["data"]
    assert got["resultType"] == "vector"
    assert {r["metric"]["app"]: r["value"][1] for r in got["result"]} == {"api": "12",
                                                                           "web": "12"}
    got = call(served, "query_range", [("direction", "BACKWARD"), ("end", str(t0 + 599 * S)),
                                       ("limit", "30"),
                                       ("query", 'rate({app="api", level="error"}[1m])'),
                                       ("start", str(t0 + 59 * S)), ("step", "60")],
               LOGCLI).json()["data"]
    [series] = got["result"]
    assert len(series["values"]) == 10 and {v[1] for v in series["values"]} == {"0.2"}


def test_logcli_labels_and_series_use_match(loki):
    served, t0 = loki
    window = [("end", str(t0 + 600 * S)), ("start", str(t0 - 3000 * S))]
    assert call(served, "label/app/values", window, LOGCLI).json()["data"] == ["api", "web"]
    got = call(served, "series", [window[0], ("match", '{app="web"}'),
                                  ("match", '{level="error"}'), window[1]], LOGCLI).json()
    assert got["data"] == [{"app": "api", "level": "error"}, {"app": "web", "level": "error"},
                           {"app": "web", "level": "info"}]


def test_logcli_basic_auth_and_org_header(loki):
    served, t0 = loki
    basic = "Basic " + base64.b64encode(b"logcli:qry").decode()
    params = [("direction", "BACKWARD"), ("end", str(t0 + 600 * S)), ("limit", "1"),
              ("query", '{app="web"}'), ("start", str(t0))]
    got = call(served, "query_range", params, {**LOGCLI, "X-Scope-OrgID": "team-a"}, basic)
    assert got.status_code == 200
    assert call(served, "query_range", params, LOGCLI, "Bearer wrong").status_code == 401


def test_errors_reach_both_clients_as_text(loki):
    """A non-2xx answer: logcli logs the body, Grafana shows it as the query's error."""
    served, t0 = loki
    got = call(served, "query_range", [("query", 'sum(count_over_time({app="api"} | json'
                                                 "[1m]))"), ("start", str(t0)),
                                       ("end", str(t0 + 600 * S))], GRAFANA)
    assert got.status_code == 400
    assert "pipeline error: 'JSONParserErr'" in got.text


def test_grafana_format_query_button(loki):
    served, _ = loki
    text = 'sum by(app)(rate({app = "api"}|= `x` | logfmt | took>5ms [1m]))/2'
    got = call(served, "format_query", [("query", text)], GRAFANA)
    assert got.status_code == 200
    formatted = got.json()["data"]
    assert formatted == ('(sum by (app) (rate({app="api"} |= "x" | logfmt | took > 5ms [1m])) '
                         "/ 2.0)")
    again = call(served, "format_query", [("query", formatted)], GRAFANA).json()["data"]
    assert again == formatted
    bad = call(served, "format_query", [("query", "sum(")], GRAFANA)
    assert bad.status_code == 400 and "line 1" in bad.text
