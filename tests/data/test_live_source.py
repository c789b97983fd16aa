"""The live source (``data.source: akshare``) against a loopback server that replays eastmoney's kline
endpoint in the format akshare's ``fund_etf_hist_em`` requests and parses (tests/data/akshare_replay.py,
answers in tests/data/fixtures/akshare/). No network: every request goes to 127.0.0.1.

Covers: the first fetch writes the akshare_em price file and the hfq factor file; a second fetch appends
only new sessions; a current folder sends no request; a restated bar is reported and the file kept; a
5xx and a timeout are retried with exponential backoff; a 5xx that outlasts the retries is one line naming
the fund and the host, and the other funds are still written; the rate limit holds between the requests
the server receives; a bar of a session still trading is never written; a factor file behind its prices
catches up; a fund filed under another name is refused; two fetches of one fund at once lose no bar;
akshare's own parser reads the same answers into the same bars; ``python -m jobs.fetch`` prints each fund
and exits 5 with one line per failed fund; and a pool run fed by the live source passes the quality gate
with the same prices as the real files it was served from."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from rotation_platform.config import load_config
from rotation_platform.config.models import AkshareConfig, PlatformConfig
from rotation_platform.data.sources import make_source
from rotation_platform.data.sources.akshare_em import (
    KLINE_COLUMNS,
    AkshareSource,
    FetchError,
    KlineClient,
    fetch_missing,
    kline_params,
)
from rotation_platform.data.sources.directory import DirectorySource, read_factor_file, read_price_file
from rotation_platform.errors import EXIT_SERVICE, DataSourceError
from tests.data.akshare_replay import FIXTURES, ReplayServer, klines_from_prices

REPO = Path(__file__).resolve().parents[2]
SH, SZ = "510300", "159915"          # a Shanghai (secid 1.) and a Shenzhen (secid 0.) fund of the fixtures
UNKNOWN = "159999"                   # no answer stored: the server says data null


def _fixture(secid: str, fqt: str) -> list[list[str]]:
    body = json.loads((FIXTURES / f"{secid}_fqt{fqt}.json").read_text(encoding="utf-8"))
    return [k.split(",") for k in body["data"]["klines"]]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def server():
    replay = ReplayServer().load_fixtures().start()
    try:
        yield replay
    finally:
        replay.stop()


def _settings(server: ReplayServer, **kw) -> AkshareConfig:
    values = {"base_url": server.url, "min_interval_seconds": 0.0, "backoff_seconds": 0.01, "timeout_seconds": 5.0}
    values.update(kw)
    return AkshareConfig(**values)


# ------------------------------------------------------------------------------------ fetch and append
def test_first_fetch_writes_the_price_and_factor_files_with_akshares_request(server, tmp_path) -> None:
    report = fetch_missing(tmp_path, [SH, SZ], _settings(server), through="2026-01-09")
    assert not report.failed
    for symbol, secid in ((SH, "1.510300"), (SZ, "0.159915")):
        fund = report.funds[symbol]
        assert (fund.status, fund.rows_appended, fund.requests, fund.retries) == ("created", 5, 2, 0)
        assert (str(fund.first.date()), str(fund.last.date())) == ("2026-01-05", "2026-01-09")
        # exactly the query fund_etf_hist_em sends (market prefix 1. for 5xxxxx, 0. for 1xxxxx; fqt 0 and 2)
        sent = [r.params for r in server.requests_for(secid)]
        assert sent == [kline_params(symbol, "0", dt.date(1970, 1, 1), dt.date(2026, 1, 9)),
                        kline_params(symbol, "2", dt.date(2026, 1, 5), dt.date(2026, 1, 9))]
        assert sent[0]["secid"] == secid and sent[0]["klt"] == "101" and sent[0]["beg"] == "19700101"
        assert sent[0]["fields2"] == "f51,f52,f53,f54,f55,f56,f57,f58,f59,f60,f61,f116"
        raw = _fixture(secid, "0")[:5]
        path = tmp_path / f"{symbol}.csv"
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[0] == ",".join(KLINE_COLUMNS)
        assert [line.split(",") for line in lines[1:]] == raw          # the server's text, unchanged
        prices = DirectorySource(tmp_path).read([symbol])[symbol]
        assert prices.layout == "akshare_em"
        assert prices.frame["volume"].tolist() == [float(b[5]) * 100 for b in raw]   # lots -> shares
        assert prices.frame["close"].tolist() == [float(b[2]) for b in raw]
        factors = read_factor_file(tmp_path / f"{symbol}_hfq_factor.csv")
        hfq = _fixture(secid, "2")[:5]
        expected = [float(h[2]) / float(b[2]) for h, b in zip(hfq, raw)]
        np.testing.assert_allclose(factors.to_numpy(), expected, rtol=1e-15)
        assert list(factors.index) == list(prices.frame["date"])


def test_second_fetch_appends_only_new_sessions_and_a_current_folder_sends_nothing(server, tmp_path) -> None:
    settings = _settings(server, overlap_sessions=3)
    fetch_missing(tmp_path, [SH], settings, through="2026-01-09")
    path, factor_path = tmp_path / f"{SH}.csv", tmp_path / f"{SH}_hfq_factor.csv"
    before, factors_before = path.read_bytes(), factor_path.read_bytes()

    report = fetch_missing(tmp_path, [SH], settings, through="2026-01-16")
    fund = report.funds[SH]
    assert (fund.status, fund.rows_appended, fund.factor_rows, fund.restatements) == ("appended", 5, 5, [])
    assert (str(fund.first.date()), str(fund.last.date())) == ("2026-01-12", "2026-01-16")
    after = path.read_bytes()
    assert after.startswith(before) and factor_path.read_bytes().startswith(factors_before)  # history untouched
    dates = read_price_file(path).frame["date"]
    assert dates.is_unique and len(dates) == 10 and str(dates.iloc[-1].date()) == "2026-01-16"
    # the three last bars of the file were fetched again to be compared: beg is the third-last date
    assert server.requests_for("1.510300", "0")[-1].params["beg"] == "20260107"

    sent = len(server.requests)
    again = fetch_missing(tmp_path, [SH], settings, through="2026-01-16")
    assert again.funds[SH].status == "current" and again.funds[SH].requests == 0
    assert len(server.requests) == sent                                  # nothing requested
    assert path.read_bytes() == after
    assert "skipped, current through 2026-01-16" in again.lines()[0]


def test_a_restated_bar_is_reported_and_the_file_kept(server, tmp_path) -> None:
    settings = _settings(server)
    fetch_missing(tmp_path, [SH], settings, through="2026-01-09")
    path = tmp_path / f"{SH}.csv"
    before = path.read_bytes()
    old = _fixture("1.510300", "0")[3]                                   # 2026-01-08
    server.restate("1.510300", "0", "2026-01-08", 2, "4.999")             # close
    server.restate("1.510300", "0", "2026-01-08", 5, str(int(old[5]) + 7))  # volume, lots

    report = fetch_missing(tmp_path, [SH], settings, through="2026-01-13")
    fund = report.funds[SH]
    assert fund.rows_appended == 2
    changed = {(r.field, str(r.date.date())): r for r in fund.restatements}
    assert set(changed) == {("close", "2026-01-08"), ("volume", "2026-01-08")}
    assert (changed["close", "2026-01-08"].file_value, changed["close", "2026-01-08"].server_value) == \
        (float(old[2]), 4.999)
    assert changed["volume", "2026-01-08"].server_value - changed["volume", "2026-01-08"].file_value == 700.0
    assert path.read_bytes().startswith(before)                          # not overwritten
    frame = read_price_file(path).frame
    assert frame.loc[frame["date"] == "2026-01-08", "close"].item() == float(old[2])
    lines = report.lines()
    assert any(line.startswith("  restated: 510300 2026-01-08 close: 510300.csv has 4.738, the server 4.999")
               for line in lines)


# ----------------------------------------------------------------------------------------- failures
def test_a_5xx_is_retried_with_exponential_backoff(server, tmp_path) -> None:
    waits: list[float] = []
    settings = _settings(server, retries=3, backoff_seconds=0.05)
    client = KlineClient(settings, sleep=waits.append)
    server.fail_next(2, status=503)
    report = fetch_missing(tmp_path, [SH], settings, through="2026-01-09", client=client)
    fund = report.funds[SH]
    assert fund.error is None and fund.rows_appended == 5 and fund.retries == 2 and fund.requests == 4
    assert len(server.requests_for("1.510300", "0")) == 3                # two 503s, then the answer
    assert waits == [0.05, 0.1]                                          # backoff doubles
    assert "(4 request(s), 2 retries)" in fund.line()


def test_a_timeout_is_retried(server, tmp_path) -> None:
    settings = _settings(server, timeout_seconds=0.3, retries=2)
    server.stall_next(1, seconds=2.0)                                    # longer than the timeout
    report = fetch_missing(tmp_path, [SH], settings, through="2026-01-09")
    fund = report.funds[SH]
    assert fund.error is None and fund.retries == 1 and fund.rows_appended == 5
    assert len(server.requests_for("1.510300", "0")) == 2
    assert [b.split(",") for b in (tmp_path / f"{SH}.csv").read_text(encoding="utf-8").splitlines()[1:]] == \
        _fixture("1.510300", "0")[:5]


def test_a_5xx_that_outlasts_the_retries_fails_one_fund_with_one_line(server, tmp_path) -> None:
    settings = _settings(server, retries=2)
    server.fail_next(3, status=502)                                      # every attempt of the first fund
    report = fetch_missing(tmp_path, [SZ, SH, UNKNOWN], settings, through="2026-01-09")
    failed = {f.symbol: f for f in report.failed}
    assert set(failed) == {SZ, UNKNOWN}
    line = failed[SZ].error.one_line()
    assert line == (f"symbol {SZ}: {server.host} gave HTTP 502 after 3 attempts (data.akshare.retries 2); check "
                    f"the connection to {server.host} (data.akshare.base_url) and run python -m jobs.fetch again; "
                    f"the other funds' bars are kept")
    assert isinstance(failed[SZ].error, FetchError) and failed[SZ].error.exit_code == EXIT_SERVICE
    unknown = failed[UNKNOWN].error.one_line()
    assert unknown.startswith(f"symbol {UNKNOWN}: {server.host} knows no fund with secid 0.{UNKNOWN}")
    assert "pools[].symbols" in unknown and "\n" not in unknown
    assert not (tmp_path / f"{SZ}.csv").exists() and not (tmp_path / f"{UNKNOWN}.csv").exists()
    assert report.funds[SH].rows_appended == 5 and (tmp_path / f"{SH}.csv").is_file()   # the others are kept


def test_a_timeout_that_outlasts_the_retries_names_the_timeout_key(server, tmp_path) -> None:
    settings = _settings(server, timeout_seconds=0.2, retries=1)
    server.stall_next(2, seconds=1.0)
    report = fetch_missing(tmp_path, [SH], settings, through="2026-01-09")
    line = report.funds[SH].error.one_line()
    assert line.startswith(f"symbol {SH}: {server.host} gave no answer within 0.2 s (data.akshare.timeout_seconds) "
                           f"after 2 attempts")


def test_a_file_in_another_layout_is_refused_with_one_line(server, tmp_path) -> None:
    (tmp_path / f"{SH}.csv").write_text("trade_date,open,high,low,close,volume,amount\n"
                                        "2026-01-05,4.6,4.7,4.6,4.65,1000,465000\n", encoding="utf-8")
    report = fetch_missing(tmp_path, [SH], _settings(server), through="2026-01-09")
    error = report.funds[SH].error
    assert isinstance(error, DataSourceError) and not server.requests
    assert "is in the cn_etf layout; the live source appends akshare_em bars" in error.one_line()


def test_the_rate_limit_holds_between_the_requests_the_server_receives(server, tmp_path) -> None:
    interval = 0.25
    fetch_missing(tmp_path, [SH, SZ], _settings(server, min_interval_seconds=interval), through="2026-01-09")
    arrivals = [r.at for r in server.requests]
    assert len(arrivals) == 4
    assert min(np.diff(arrivals)) >= interval


def test_a_session_still_trading_is_not_fetched(server, tmp_path) -> None:
    """At 10:30 on 2026-01-20 the server already has a (partial) bar of that day; only 2026-01-19 closes."""
    source = AkshareSource(tmp_path, _settings(server), now=pd.Timestamp("2026-01-20 10:30", tz="Asia/Shanghai"),
                           delays={"XSHG": 30})
    assert source.through(SH) == pd.Timestamp("2026-01-19")
    prices = source.read([SH])[SH]
    assert str(prices.frame["date"].max().date()) == "2026-01-19"
    assert server.requests_for("1.510300", "0")[0].params["end"] == "20260119"
    evening = AkshareSource(tmp_path, _settings(server), now=pd.Timestamp("2026-01-20 15:31", tz="Asia/Shanghai"),
                            delays={"XSHG": 30})
    assert str(evening.read([SH])[SH].frame["date"].max().date()) == "2026-01-20"
    assert evening.report.funds[SH].rows_appended == 1 and evening.describe()["source"] == "akshare"


# --------------------------------------------------------------------------------- akshare's own parser
def test_akshares_fund_etf_hist_em_parses_the_same_replay_into_the_same_bars(server, tmp_path, monkeypatch) -> None:
    from akshare.fund.fund_etf_em import fund_etf_hist_em

    real_get = requests.get
    hosts: list[str] = []

    def to_replay(url, *args, **kwargs):            # akshare hard-codes push2his.eastmoney.com
        hosts.append(requests.utils.urlparse(url).netloc)
        return real_get(server.url, *args, **kwargs)

    monkeypatch.setattr(requests, "get", to_replay)
    fetch_missing(tmp_path, [SH, SZ], _settings(server), through="2026-01-16")
    for symbol in (SH, SZ):
        ours = pd.read_csv(tmp_path / f"{symbol}.csv", dtype={"日期": str})
        theirs = fund_etf_hist_em(symbol=symbol, period="daily", start_date="19700101", end_date="20260116",
                                  adjust="")
        assert list(theirs.columns) == list(KLINE_COLUMNS) == list(ours.columns)
        pd.testing.assert_frame_equal(theirs.reset_index(drop=True), ours, check_dtype=False)
        # akshare sent the query this module sends
        ours_query = kline_params(symbol, "0", dt.date(1970, 1, 1), dt.date(2026, 1, 16))
        assert server.requests[-1].params == ours_query
        hfq = fund_etf_hist_em(symbol=symbol, start_date="19700101", end_date="20260116", adjust="hfq")
        factors = read_factor_file(tmp_path / f"{symbol}_hfq_factor.csv")
        np.testing.assert_allclose(factors.to_numpy(), (hfq["收盘"] / theirs["收盘"]).to_numpy(), rtol=1e-15)
    assert set(hosts) == {"push2his.eastmoney.com"}


# --------------------------------------------------------------------------------------- command line
def _cli_config(tmp_path: Path, server: ReplayServer, symbols: list[str], **akshare) -> Path:
    drop = tmp_path / "drop"
    drop.mkdir(exist_ok=True)
    live = {"base_url": server.url, "min_interval_seconds": 0, "backoff_seconds": 0.01, "retries": 1, **akshare}
    doc = {"name": "live", "data": {"source": "akshare", "directory": str(drop), "akshare": live},
           "screening": {"min_obs": 3},
           "pools": [{"name": "LIVE", "kind": "A_SHARE", "calendar": "XSHG", "summary_weight": 1.0,
                      "capital": {"target_capital": 1_000_000, "max_single_weight": 0.5, "max_adv_pct": 0.05},
                      "symbols": symbols}]}
    path = tmp_path / "live.yaml"
    path.write_text(json.dumps(doc), encoding="utf-8")   # JSON is YAML
    return path


def test_jobs_fetch_prints_each_fund_and_exits_5_when_one_fails(server, tmp_path, capsys) -> None:
    from jobs.fetch import main

    config = _cli_config(tmp_path, server, [SH, SZ, UNKNOWN])
    assert main(["--config", str(config), "--until", "2026-01-09", "--symbols", SH, SZ]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"fetch from {server.host} into {tmp_path / 'drop'}:"
    assert out[1] == f"  {SH}: 5 row(s) written, 2026-01-05..2026-01-09, 5 factor row(s); 0 restatement(s) (2 request(s))"

    server.restate("0.159915", "0", "2026-01-09", 1, "9.999")           # an open restated
    code = main(["--config", str(config), "--until", "2026-01-12"])
    captured = capsys.readouterr()
    assert code == EXIT_SERVICE
    lines = captured.out.splitlines()
    assert f"  {SH}: 1 row(s) appended, 2026-01-12..2026-01-12, 1 factor row(s); 0 restatement(s) (2 request(s))" in lines
    assert any(line.startswith(f"  {SZ}: 1 row(s) appended") and "1 restatement(s)" in line for line in lines)
    assert any(line.startswith(f"    restated: {SZ} 2026-01-09 open: {SZ}.csv has ") for line in lines)
    errors = captured.err.splitlines()
    assert len(errors) == 2 and errors[0].startswith(f"error: symbol {UNKNOWN}: {server.host} knows no fund")
    assert errors[1] == "1 of 3 fund(s) failed; what was fetched for the others is kept"

    assert main(["--config", str(config), "--until", "2026-01-12", "--symbols", SH]) == 0
    assert capsys.readouterr().out.splitlines()[1] == \
        f"  {SH}: skipped, current through 2026-01-12 (last bar 2026-01-12; nothing requested)"
    assert main(["--config", str(config), "--symbols", "510500"]) == 2   # not configured: a usage error
    assert "--symbols: ['510500'] are in no pool" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ end to end
LIVE_POOL = ["518880", "511260", "511130", "159985", "159980", "159981", "160520"]   # each has a factor file


def _serve_real_files(server: ReplayServer, shared: Path, symbols: list[str]) -> None:
    """Serve the real files' bars (unadjusted, and back-adjusted by their factor files) in eastmoney's format;
    the back-adjusted prices with 9 decimals (the server sends 3), so that hfq / raw gives the vendor's
    factor back and the live-fed pool can be compared with the files."""
    from rotation_platform.data.sources.akshare_em import market_id

    for symbol in symbols:
        frame = read_price_file(shared / f"{symbol}.csv", symbol).frame
        frame = frame[frame["date"].notna()]
        factor = read_factor_file(shared / f"{symbol}_hfq_factor.csv", symbol)
        secid = f"{market_id(symbol)}.{symbol}"
        server.put(secid, "0", klines_from_prices(frame))
        # back-adjusted bars on the factor file's dates only: carrying its last factor further would add
        # flat steps and change how noisy the file looks to the adjustment
        server.put(secid, "2", klines_from_prices(frame[frame["date"].isin(factor.index)], factor, digits=9))


def test_a_pool_fed_by_the_live_source_passes_the_quality_gate(server, tmp_path, shared_data) -> None:
    from rotation_platform.production import fuses
    from rotation_platform.production.pool_run import PoolRun

    _serve_real_files(server, shared_data, LIVE_POOL)
    drop = tmp_path / "drop"
    drop.mkdir()
    for table in ("platform_splits.csv", "platform_dividends.csv"):   # the tables stay in the drop folder
        shutil.copy(shared_data / table, drop / table)
    base: PlatformConfig = load_config(REPO / "configs" / "cn_etf.yaml", env={})
    other = base.pool("OTHER")
    pool = other.model_copy(update={"name": "LIVE", "symbols": tuple(LIVE_POOL), "summary_weight": 1.0})
    data = base.data.model_copy(update={"source": "akshare", "directory": drop,
                                        "akshare": AkshareConfig(base_url=server.url, min_interval_seconds=0.0)})
    config = base.model_copy(update={"pools": (pool,), "data": data})
    reference = PoolRun(config, "LIVE", ["2026-07-31"], source=DirectorySource(shared_data))
    t = reference.prices.panel["close"].dropna(how="all").index[-1]

    assert isinstance(make_source(config, end=t.date()), AkshareSource)
    run = PoolRun(config, "LIVE", [t])                                   # make_source: fetch, then read
    gate = fuses.quality_gate(run)
    assert gate.passed, gate.summary
    assert gate.summary == fuses.quality_gate(PoolRun(config, "LIVE", [t], source=DirectorySource(shared_data))).summary
    meta = run.prices.panel.meta
    assert meta["source"] == "akshare" and meta["base_url"] == server.url
    assert sorted(r.key for r in server.requests) == sorted(
        (f"{1 if s.startswith('5') else 0}.{s}", fqt) for s in LIVE_POOL for fqt in ("0", "2"))
    for symbol in LIVE_POOL:
        assert (drop / f"{symbol}.csv").is_file() and (drop / f"{symbol}_hfq_factor.csv").is_file()
    expected = reference.prices.panel
    got = run.prices.panel
    assert list(got.sessions) == list(expected.sessions) and list(got.symbols) == list(expected.symbols)
    for name in ("open", "high", "low", "close", "volume", "amount"):
        np.testing.assert_allclose(got[name].to_numpy(), expected[name].to_numpy(), rtol=1e-6, equal_nan=True,
                                   err_msg=name)
    np.testing.assert_array_equal(run.prices.raw_panel["close"].to_numpy(),
                                  reference.prices.raw_panel["close"].to_numpy())
    assert sorted(run.prices.methods.items()) == sorted(reference.prices.methods.items())
    # a second run writes nothing: funds whose data ended before t (160520, 511130) are asked again, in case
    # they traded since, and the factor files (served only as far as the real ones go) are asked to catch up
    before = {p.name: _sha(p) for p in drop.iterdir()}
    assert fuses.quality_gate(PoolRun(config, "LIVE", [t])).summary == gate.summary
    assert {p.name: _sha(p) for p in drop.iterdir()} == before


# ------------------------------------------------------------------------------------- factors, config
def test_a_factor_file_behind_its_price_file_catches_up_without_new_prices(server, tmp_path) -> None:
    settings = _settings(server)
    fetch_missing(tmp_path, [SH], settings, through="2026-01-16")
    factor_path = tmp_path / f"{SH}_hfq_factor.csv"
    full = factor_path.read_text(encoding="utf-8").splitlines()
    factor_path.write_text("\n".join(full[:-3]) + "\n", encoding="utf-8")   # the last three factors lost
    prices = (tmp_path / f"{SH}.csv").read_bytes()
    report = fetch_missing(tmp_path, [SH], settings, through="2026-01-16")
    fund = report.funds[SH]
    assert (fund.status, fund.rows_appended, fund.factor_rows, fund.restatements) == ("factors_only", 0, 3, [])
    assert factor_path.read_text(encoding="utf-8").splitlines() == full
    assert (tmp_path / f"{SH}.csv").read_bytes() == prices
    assert [r.params["fqt"] for r in server.requests[-1:]] == ["2"]          # no price request


def test_the_akshare_source_needs_a_drop_folder_in_the_configuration(tmp_path) -> None:
    from rotation_platform.errors import ConfigError

    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps({"name": "bad", "data": {"source": "akshare"}, "screening": {"min_obs": 3},
                                "pools": [{"name": "P", "kind": "A_SHARE", "summary_weight": 1.0,
                                           "capital": {"target_capital": 1e6, "max_single_weight": 0.5,
                                                       "max_adv_pct": 0.05},
                                           "symbols": [SH, SZ, "510500"]}]}), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    line = caught.value.one_line()
    assert "source 'akshare' needs 'directory'" in line and "\n" not in line


def test_a_fund_filed_under_another_name_is_refused_not_duplicated(server, tmp_path) -> None:
    fetch_missing(tmp_path, [SH], _settings(server), through="2026-01-09")
    (tmp_path / f"{SH}.csv").rename(tmp_path / f"sh{SH}.csv")
    sent = len(server.requests)
    report = fetch_missing(tmp_path, [SH], _settings(server), through="2026-01-16")
    line = report.funds[SH].error.one_line()
    assert line == (f"symbol {SH}: the folder holds its prices as sh{SH}.csv; the live source appends to {SH}.csv "
                    f"(akshare_em layout); rename an akshare_em file to {SH}.csv, or move sh{SH}.csv out of the "
                    f"drop folder")
    assert not (tmp_path / f"{SH}.csv").exists() and len(server.requests) == sent


def test_two_fetches_of_one_fund_at_once_lose_no_bars(server, tmp_path) -> None:
    """A slow fetch through 2026-01-09 holds the fund while one through 2026-01-16 starts: the second
    waits, then appends to what the first wrote."""
    import threading
    import time

    settings = _settings(server)
    server.stall_next(1, seconds=0.5)
    reports = {}
    slow = threading.Thread(target=lambda: reports.setdefault(
        "slow", fetch_missing(tmp_path, [SH], settings, through="2026-01-09")))
    slow.start()
    while not server.requests:          # the slow fetch's first request has arrived: it holds the fund
        time.sleep(0.01)
    reports["late"] = fetch_missing(tmp_path, [SH], settings, through="2026-01-16")
    slow.join()
    assert reports["slow"].funds[SH].rows_appended == 5
    late = reports["late"].funds[SH]
    assert (late.status, late.rows_appended, str(late.first.date())) == ("appended", 5, "2026-01-12")
    dates = read_price_file(tmp_path / f"{SH}.csv").frame["date"]
    assert dates.is_unique and len(dates) == 10


def test_python_m_jobs_fetch_exits_5_with_one_line_per_failed_fund(server, tmp_path) -> None:
    import os
    import subprocess
    import sys

    config = _cli_config(tmp_path, server, [SH, SZ, "510500"], retries=1)
    server.fail_next(2, status=503)                                      # both attempts of 510300, the first fund
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("ROTATION_CONFIG", None)
    done = subprocess.run([sys.executable, "-m", "jobs.fetch", "--config", str(config), "--until", "2026-01-09",
                           "--symbols", SH, SZ], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == EXIT_SERVICE
    assert done.stderr.splitlines() == [
        f"error: symbol {SH}: {server.host} gave HTTP 503 after 2 attempts (data.akshare.retries 1); check the "
        f"connection to {server.host} (data.akshare.base_url) and run python -m jobs.fetch again; the other funds' "
        f"bars are kept",
        "1 of 2 fund(s) failed; what was fetched for the others is kept"]
    assert f"  {SZ}: 5 row(s) written, 2026-01-05..2026-01-09" in done.stdout
    assert (tmp_path / "drop" / f"{SZ}.csv").is_file() and not (tmp_path / "drop" / f"{SH}.csv").exists()
