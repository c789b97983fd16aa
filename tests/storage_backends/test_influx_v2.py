"""The InfluxDB 2.x path (``influxdb-client``): Flux and delete-predicate construction, and the HTTP
requests the client sends.

No InfluxDB 2.x server can run here, so these tests check what is built and sent: the Flux text and
predicates exactly, and the client's requests (path, organisation/bucket/precision parameters, token
header, gzip body holding our line protocol) as received by a local HTTP endpoint that records them
and answers like a 2.x server would. Storage semantics themselves are covered against InfluxDB 1.6
through the v1 transport, which shares all encoding and commit logic.
"""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pyarrow as pa
import pytest

from rotation_platform.storage import codec
from rotation_platform.storage.base import Partition
from rotation_platform.storage.influx import Column, InfluxStore, encode_lines, plan_layout
from rotation_platform.storage.influx_v2 import (
    InfluxV2Transport,
    delete_predicate,
    flux_count,
    flux_select,
    flux_string,
    flux_tag_values,
)

TOKEN = "test-token-value"


def test_flux_string_escapes_quotes_backslashes_and_interpolation() -> None:
    assert flux_string('a"b\\c${x}') == '"a\\"b\\\\c\\${x}"'


def test_flux_select_text() -> None:
    columns = [Column("rp_n", "field", pa.int64()), Column("close", "field", pa.float64()),
               Column("symbol", "tag", pa.string())]
    q = flux_select("rotation", "prices", {"rp_part": 'A"1', "rp_gen": "g1"}, columns, (10, 20))
    assert q == (
        'from(bucket: "rotation")\n'
        '  |> range(start: time(v: 10), stop: time(v: 20))\n'
        '  |> filter(fn: (r) => r._measurement == "prices" and r["rp_gen"] == "g1" and r["rp_part"] == "A\\"1")\n'
        '  |> filter(fn: (r) => r._field == "rp_n" or r._field == "close")\n'
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        '  |> map(fn: (r) => ({r with rp_time: int(v: r._time)}))\n'
        '  |> group()\n'
        '  |> keep(columns: ["rp_time", "rp_n", "close", "symbol"])')


def test_flux_count_and_tag_values_text() -> None:
    assert "|> count()" in flux_count("b", "m", {"rp_part": "P"}, "rp_n")
    assert 'r._field == "rp_n"' in flux_count("b", "m", {"rp_part": "P"}, "rp_n")
    q = flux_tag_values("b", "m", "rp_gen", {"rp_part": "P"})
    assert q.startswith('import "influxdata/influxdb/schema"\nschema.tagValues(bucket: "b", tag: "rp_gen"')
    assert 'r["rp_part"] == "P"' in q and "start: time(v: -9223372036854775806)" in q


def test_delete_predicate() -> None:
    assert delete_predicate("prices", {"rp_part": "A_SHARE", "rp_gen": 'x"y'}) == \
        '_measurement="prices" AND rp_gen="x\\"y" AND rp_part="A_SHARE"'
    with pytest.raises(ValueError):
        delete_predicate("m", {"bad key": "v"})


class _Recorder(BaseHTTPRequestHandler):
    requests: list[dict] = []
    query_answer = b""

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _record(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        entry = {"method": self.command, "path": parts.path, "query": parse_qs(parts.query),
                 "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
        type(self).requests.append(entry)
        return entry

    def _answer(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("X-Influxdb-Version", "v2.7.10")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        entry = self._record()
        if entry["path"] == "/ping":
            self._answer(204)
        elif entry["path"] == "/api/v2/buckets":
            bucket = {"id": "1", "name": "rotation", "orgID": "o", "retentionRules": []}
            self._answer(200, json.dumps({"buckets": [bucket]}).encode())
        else:
            self._answer(404)

    def do_POST(self) -> None:
        entry = self._record()
        if entry["path"] in ("/api/v2/write", "/api/v2/delete"):
            self._answer(204)
        elif entry["path"] == "/api/v2/query":
            self._answer(200, type(self).query_answer, "text/csv")
        else:
            self._answer(404)


@pytest.fixture()
def recorder():
    _Recorder.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder
    server.shutdown()


def test_client_write_sends_gzip_line_protocol_with_token(recorder) -> None:
    url, rec = recorder
    transport = InfluxV2Transport(url, "rotation", token=TOKEN, org="rotation")
    frame = pd.DataFrame({"close": [1.5, 2.0]}, index=pd.DatetimeIndex(["2024-01-02", "2024-01-03"], name="session"))
    enc = codec.encode(frame)
    layout = plan_layout(enc, "prices", Partition.single("A_SHARE"))
    lines = encode_lines(enc.table, layout, {"rp_part": "A_SHARE", "rp_gen": "g1"}, 0, 2)
    body = "".join(lines.to_pylist()).encode()
    transport.write(body, compressed=False)
    write = next(r for r in rec.requests if r["path"] == "/api/v2/write")
    assert write["query"] == {"org": ["rotation"], "bucket": ["rotation"], "precision": ["ns"]}
    assert write["headers"]["authorization"] == f"Token {TOKEN}"
    assert write["headers"]["content-encoding"] == "gzip"
    assert gzip.decompress(write["body"]) == body
    assert body == (b"prices,rp_gen=g1,rp_part=A_SHARE rp_n=0i,close=1.5 1704153600000000000\n"
                    b"prices,rp_gen=g1,rp_part=A_SHARE rp_n=1i,close=2 1704240000000000000\n")
    with pytest.raises(ValueError, match="compresses line protocol itself"):
        transport.write(gzip.compress(body), compressed=True)


def test_client_select_count_and_delete_requests(recorder) -> None:
    url, rec = recorder
    transport = InfluxV2Transport(url, "rotation", token=TOKEN, org="rotation")
    rec.query_answer = (b"#datatype,string,long,long,long,double,string\n"
                        b"#group,false,false,false,false,false,false\n"
                        b"#default,_result,,,,,\n"
                        b",result,table,rp_time,rp_n,close,symbol\n"
                        b",,0,1704153600000000000,0,1.5,DA 01\n"
                        b",,0,1704240000000000000,1,2,DA 01\n\n")
    columns = [Column("rp_n", "field", pa.int64()), Column("close", "field", pa.float64()),
               Column("symbol", "tag", pa.string())]
    table = transport.select("prices", {"rp_part": "A_SHARE"}, columns, strings=True)
    assert table.column("time").to_pylist() == [1704153600000000000, 1704240000000000000]
    assert table.column("close").to_pylist() == [1.5, 2.0] and table.column("symbol").to_pylist() == ["DA 01"] * 2
    query = next(r for r in rec.requests if r["path"] == "/api/v2/query")
    sent = json.loads(query["body"] if query["headers"].get("content-encoding") != "gzip"
                      else gzip.decompress(query["body"]))
    assert sent["query"] == flux_select("rotation", "prices", {"rp_part": "A_SHARE"}, columns)
    assert query["query"]["org"] == ["rotation"]

    transport.drop("prices", {"rp_part": "A_SHARE", "rp_gen": "g0"})
    delete = next(r for r in rec.requests if r["path"] == "/api/v2/delete")
    payload = json.loads(delete["body"] if delete["headers"].get("content-encoding") != "gzip"
                         else gzip.decompress(delete["body"]))
    assert payload["predicate"] == '_measurement="prices" AND rp_gen="g0" AND rp_part="A_SHARE"'
    assert delete["query"] == {"org": ["rotation"], "bucket": ["rotation"]}
    assert transport.ping().lstrip("v").startswith("2.")


def test_store_over_v2_transport_sends_uncompressed_body_to_the_client(recorder) -> None:
    """The store leaves compression to the client (``gzip_inside``) and commits after the count."""
    url, rec = recorder
    transport = InfluxV2Transport(url, "rotation", token=TOKEN, org="rotation")
    store = InfluxStore(transport)
    rec.query_answer = b""
    frame = pd.DataFrame({"close": [1.5]}, index=pd.DatetimeIndex(["2024-01-02"], name="session"))
    with pytest.raises(Exception, match="holds 0 of the 1 points"):
        store.write(("prices",), Partition.single("A_SHARE"), frame)  # the recorder stores nothing
    writes = [r for r in rec.requests if r["path"] == "/api/v2/write"]
    assert len(writes) == 1 and gzip.decompress(writes[0]["body"]).startswith(b"prices,")
    assert not any(b"rp_catalog" in gzip.decompress(r["body"]) for r in writes)  # nothing committed
