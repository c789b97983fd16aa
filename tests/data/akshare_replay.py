"""A loopback HTTP server that answers eastmoney's kline endpoint (``/api/qt/stock/kline/get``) the way the
real one does, for the live-source tests.

The answers are JSON bodies in the server's format (``tests/data/fixtures/akshare/<secid>_fqt<N>.json``:
``rc, rt, svr, lt, full, dlmkts, data{code, market, name, decimal, dktotal, preKPrice, klines}``, each bar
``日期,开盘,收盘,最高,最低,成交量,成交额,振幅,涨跌幅,涨跌额,换手率`` joined by commas). Like the real server,
an answer holds the bars of the requested ``secid`` and ``fqt`` dated from ``beg`` through ``end``
(``YYYYMMDD``, inclusive), and ``"data": null`` for a ``secid`` it does not know.

The test starts the server on a free port (:meth:`ReplayServer.start`) and stops it by its own handle
(:meth:`ReplayServer.stop`). :attr:`ReplayServer.requests` records each request's arrival time (monotonic
seconds) and query; :meth:`fail_next` and :meth:`stall_next` make the next requests answer an HTTP error
or wait before answering (longer than a client's timeout).
"""

from __future__ import annotations

import copy
import json
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "akshare"
KLINE_PATH = "/api/qt/stock/kline/get"
UNKNOWN = json.loads((FIXTURES / "unknown.json").read_text(encoding="utf-8"))

__all__ = ["FIXTURES", "KLINE_PATH", "Request", "ReplayServer", "klines_from_prices"]


@dataclass(frozen=True)
class Request:
    """One request as the server received it."""

    at: float                   # time.monotonic() on arrival
    path: str
    params: Mapping[str, str]

    @property
    def key(self) -> tuple[str, str]:
        return self.params.get("secid", ""), self.params.get("fqt", "")


class ReplayServer:
    """eastmoney's kline endpoint on 127.0.0.1, replaying stored answers (see the module docstring)."""

    def __init__(self) -> None:
        self.bodies: dict[tuple[str, str], dict] = {}
        self.requests: list[Request] = []
        self._plan: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------ answers
    def load_fixtures(self, folder: Path = FIXTURES) -> "ReplayServer":
        """Every ``<secid>_fqt<N>.json`` of ``folder``."""
        for path in sorted(folder.glob("*_fqt*.json")):
            secid, _, fqt = path.stem.partition("_fqt")
            self.bodies[(secid, fqt)] = json.loads(path.read_text(encoding="utf-8"))
        return self

    def put(self, secid: str, fqt: str, klines: list[str], *, name: str = "") -> None:
        """Serve ``klines`` (the fund's whole history) for ``secid`` and ``fqt``."""
        market, _, code = secid.partition(".")
        self.bodies[(secid, fqt)] = {"rc": 0, "rt": 17, "svr": 177617930, "lt": 1, "full": 0, "dlmkts": "",
                                     "data": {"code": code, "market": int(market), "name": name, "decimal": 3,
                                              "dktotal": len(klines), "preKPrice": 0.0, "klines": list(klines)}}

    def restate(self, secid: str, fqt: str, day: str, column: int, text: str) -> None:
        """Change field ``column`` (0-based, of the eleven) of the bar dated ``day``."""
        with self._lock:
            klines = self.bodies[(secid, fqt)]["data"]["klines"]
            for i, line in enumerate(klines):
                fields = line.split(",")
                if fields[0] == day:
                    fields[column] = text
                    klines[i] = ",".join(fields)
                    return
        raise KeyError(f"{secid} fqt {fqt} has no bar dated {day}")

    def fail_next(self, count: int, status: int = 503) -> None:
        """The next ``count`` requests are answered with HTTP ``status``."""
        with self._lock:
            self._plan.extend([("status", float(status))] * count)

    def stall_next(self, count: int, seconds: float) -> None:
        """The next ``count`` requests wait ``seconds`` before their (normal) answer."""
        with self._lock:
            self._plan.extend([("sleep", float(seconds))] * count)

    def answer(self, params: Mapping[str, str]) -> dict:
        """The body for a query: the stored answer with its bars cut to ``beg``..``end``."""
        body = self.bodies.get((params.get("secid", ""), params.get("fqt", "")))
        if body is None:
            return copy.deepcopy(UNKNOWN)
        out = copy.deepcopy(body)
        beg = params.get("beg", "19700101")
        end = params.get("end", "20500101")
        out["data"]["klines"] = [k for k in out["data"]["klines"] if beg <= k[:10].replace("-", "") <= end]
        return out

    # ------------------------------------------------------------------------------------- server
    @property
    def url(self) -> str:
        """The kline endpoint's URL (``data.akshare.base_url``)."""
        assert self._httpd is not None, "the server is not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{KLINE_PATH}"

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    def start(self) -> "ReplayServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
                return

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                parts = urlsplit(self.path)
                params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                with server._lock:
                    server.requests.append(Request(time.monotonic(), parts.path, params))
                    action = server._plan.pop(0) if server._plan else None
                if action is not None and action[0] == "sleep":
                    time.sleep(action[1])
                try:
                    if action is not None and action[0] == "status":
                        self._send(int(action[1]), b'{"rc":102,"data":null}')
                    elif parts.path != KLINE_PATH:
                        self._send(404, b"not found")
                    else:
                        self._send(200, json.dumps(server.answer(params), ensure_ascii=False).encode("utf-8"))
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a timeout)
                    return

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._httpd = None
        self._thread = None

    def requests_for(self, secid: str, fqt: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.params.get("secid") == secid
                    and (fqt is None or r.params.get("fqt") == fqt)]


def _num(value: float, digits: int) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def klines_from_prices(frame: pd.DataFrame, factor: pd.Series | None = None, digits: int = 3) -> list[str]:
    """Bars in the server's format from canonical records (``date, open, high, low, close, volume`` in
    shares, ``amount``), unadjusted, or back-adjusted by ``factor`` (carried onto the dates: the first
    factor before it starts, the last after it ends). Volume goes out in lots; missing values as ``-``."""
    frame = frame.sort_values("date", kind="stable").reset_index(drop=True)
    f = pd.Series(1.0, index=frame["date"])
    if factor is not None and len(factor):
        f = factor.sort_index().reindex(frame["date"], method="ffill").fillna(float(factor.sort_index().iloc[0]))
    f = f.to_numpy(dtype=float)
    out: list[str] = []
    prev = math.nan
    for i, row in enumerate(frame.itertuples(index=False)):
        o, h, lo, c = (row.open * f[i], row.high * f[i], row.low * f[i], row.close * f[i])
        lots = row.volume / 100.0
        volume = "-" if not math.isfinite(lots) else (str(int(lots)) if float(lots).is_integer() else repr(lots))
        amp = (h - lo) / prev * 100 if prev > 0 else 0.0
        pct = (c - prev) / prev * 100 if prev > 0 else 0.0
        chg = c - prev if prev > 0 else 0.0
        out.append(",".join([row.date.strftime("%Y-%m-%d"), _num(o, digits), _num(c, digits), _num(h, digits),
                             _num(lo, digits), volume, _num(row.amount, 3), _num(amp, 2), _num(pct, 2),
                             _num(chg, digits), "0.00"]))
        if math.isfinite(c):
            prev = c
    return out
