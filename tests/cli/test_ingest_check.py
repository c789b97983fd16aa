"""``python -m jobs.ingest check DIR``: what each file is understood to be, the gate's findings, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from jobs.ingest import check_folder, main
from rotation_platform.calendars import get_calendar

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data" / "cn_etf"
N = 90
TODAY = "2026-12-01"


def _prices(seed: int, n: int = N) -> pd.DataFrame:
    sessions = get_calendar("XSHG").sessions("2024-01-02", "2026-12-31")[:n]
    rng = np.random.default_rng(seed)
    close = np.round(np.exp(np.cumsum(rng.normal(0.0, 0.01, n))), 3)
    open_ = np.round(close * (1 + rng.normal(0.0, 0.003, n)), 3)
    high = np.round(np.maximum(open_, close) + 0.005, 3)
    low = np.round(np.minimum(open_, close) - 0.005, 3)
    volume = rng.integers(1_000, 100_000, n).astype(float) * 100
    amount = np.round(volume * (open_ + high + low + close) / 4, 2)
    return pd.DataFrame({"date": pd.DatetimeIndex(sessions), "open": open_, "high": high, "low": low,
                         "close": close, "volume": volume, "amount": amount})


def _write_good(folder: Path) -> None:
    """Five funds, five layouts: plain, 通达信 (GBK, title and footer), yfinance, Alpha Vantage, cn_etf."""
    folder.mkdir(exist_ok=True)
    a = _prices(1)
    a.assign(date=a["date"].dt.strftime("%Y-%m-%d")).to_csv(folder / "510300.csv", index=False)
    b = _prices(2)
    rows = ["510500 中证500ETF 日线 不复权", "日期\t开盘\t最高\t最低\t收盘\t成交量\t成交额"]
    rows += ["\t".join([r.date.strftime("%Y/%m/%d"), *(f"{getattr(r, c):g}" for c in ("open", "high", "low", "close")),
                        f"{r.volume:.0f}", f"{r.amount:.2f}"]) for r in b.itertuples()]
    rows.append("数据来源:通达信")
    (folder / "SH#510500.txt").write_bytes("\r\n".join(rows).encode("gbk"))
    c = _prices(3)
    lines = ["Price,Adj Close,Close,High,Low,Open,Volume", "Ticker,512880.SS,512880.SS,512880.SS,512880.SS,512880.SS,"
             "512880.SS", "Date,,,,,,"]
    lines += [f"{r.date:%Y-%m-%d},{r.close},{r.close},{r.high},{r.low},{r.open},{r.volume:.0f}" for r in c.itertuples()]
    (folder / "512880.SS.csv").write_text("\n".join(lines) + "\n")
    d = _prices(4)
    lines = ["timestamp,open,high,low,close,volume"]
    lines += [f"{r.date:%Y-%m-%d},{r.open},{r.high},{r.low},{r.close},{r.volume:.0f}"
              for r in d.iloc[::-1].itertuples()]
    (folder / "sz159915.csv").write_text("\n".join(lines) + "\n")
    e = _prices(5)
    pd.DataFrame({"trade_date": e["date"].dt.strftime("%Y-%m-%d"), "open": e["open"], "high": e["high"],
                  "low": e["low"], "close": e["close"], "volume": e["volume"] / 100, "amount": e["amount"]}
                 ).to_csv(folder / "518880.csv", index=False)


LAYOUTS = {"510300": ("510300.csv", "plain"), "510500": ("SH#510500.txt", "tdx"), "512880": ("512880.SS.csv", "yahoo"),
           "159915": ("sz159915.csv", "alpha_vantage"), "518880": ("518880.csv", "cn_etf")}


def test_good_folder_exits_0_and_prints_each_files_layout(tmp_path: Path, capsys) -> None:
    _write_good(tmp_path)
    assert main(["check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for symbol, (name, layout) in LAYOUTS.items():
        assert f"{name} -> {symbol}: layout {layout}," in out, out
    assert "skipped line 1: 510500 中证500ETF 日线 不复权" in out and "skipped line 93: 数据来源:通达信" in out
    assert "gb18030, tab-separated" in out and "header 3 rows (yfinance Price/Ticker/Date)" in out
    assert "(newest first)" in out and "volume in x100 shares (lots) (layout cn_etf)" in out
    assert out.rstrip().splitlines()[-1].endswith("exit 0: no ERROR")

    assert main(["check", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {f["symbol"]: (f["file"], f["layout"]) for f in doc["files"]} == LAYOUTS
    by_symbol = {f["symbol"]: f for f in doc["files"]}
    assert by_symbol["510500"]["skipped_lines"] == [{"line": 1, "text": "510500 中证500ETF 日线 不复权"},
                                                    {"line": 93, "text": "数据来源:通达信"}]
    assert by_symbol["512880"]["corporate_actions"] == {"in_file_factors": "column 'Adj Close' (90 rows)"}
    assert by_symbol["518880"]["volume_unit_shares"] == 100 and by_symbol["510300"]["volume_unit_shares"] == 1
    assert by_symbol["159915"]["amount_present"] is False and by_symbol["510300"]["amount_present"] is True
    assert doc["counts"]["ERROR"] == 0 and doc["counts"]["FATAL"] == 0 and doc["exit_code"] == 0
    assert by_symbol["510300"]["first"] == "2024-01-02" and by_symbol["510300"]["rows"] == N


def test_a_planted_unreadable_cell_exits_4_naming_file_and_row(tmp_path: Path, capsys) -> None:
    _write_good(tmp_path)
    path = tmp_path / "510300.csv"
    lines = path.read_text().splitlines()
    cells = lines[7].split(",")
    cells[4] = "abc"
    lines[7] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    assert main(["check", str(tmp_path)]) == 4
    out = capsys.readouterr().out
    bad = [line for line in out.splitlines() if line.lstrip().startswith("ERROR")]
    assert len(bad) == 1, out
    for part in ("unreadable", "510300.csv", "data row 7", "line 8 of the file", "'close'", "'abc'"):
        assert part in bad[0], bad[0]
    # the other files are still described and checked
    assert "SH#510500.txt -> 510500: layout tdx" in out


def test_a_planted_quality_error_exits_4_naming_file_and_row(tmp_path: Path, capsys) -> None:
    _write_good(tmp_path)
    path = tmp_path / "518880.csv"
    lines = path.read_text().splitlines()
    cells = lines[20].split(",")
    cells[0] = "2024-01-27"          # a Saturday
    lines[20] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    assert main(["check", str(tmp_path), "--json"]) == 4
    doc = json.loads(capsys.readouterr().out)
    entry = next(f for f in doc["files"] if f["symbol"] == "518880")
    (finding,) = [f for f in entry["findings"] if f["severity"] == "ERROR"]
    assert finding["check"] == "non_session_date" and finding["lines"] == [20]
    assert finding["file"].endswith("518880.csv")


def test_an_unknown_layout_is_an_error_with_the_fix(tmp_path: Path, capsys) -> None:
    _write_good(tmp_path)
    (tmp_path / "510300.csv").write_text("day,o,h,l,c,v\n2024-01-02,1,1,1,1,1\n")
    assert main(["check", str(tmp_path)]) == 4
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "ERROR unknown_layout:" in x)
    assert "510300.csv" in line and "add the header line 'date,open,high,low,close,volume,amount'" in line


def test_with_a_config_the_pools_funds_are_checked(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "prices"
    _write_good(folder)
    config = tmp_path / "check.yaml"
    config.write_text(yaml.safe_dump({
        "extends": os.path.relpath(ROOT / "configs" / "base.yaml", tmp_path), "name": "check",
        "data": {"source": "directory", "directory": "prices", "volume_unit": {"510300": "lots"}},
        "pools": [{"name": "CORE", "kind": "A_SHARE", "calendar": "XSHG", "summary_weight": 1.0,
                   "capital": {"target_capital": 1e6, "max_single_weight": 0.5, "max_adv_pct": 0.05},
                   "symbols": ["510300", "510500", "518880", "159915", "512880", "588000"]}]}))
    code = main(["check", str(folder), "--config", str(config), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 4 and doc["exit_code"] == 4
    by_symbol = {f["symbol"]: f for f in doc["files"]}
    # the configured unit override is applied to that fund only
    assert by_symbol["510300"]["volume_unit_shares"] == 100
    assert by_symbol["510300"]["volume_unit_source"] == "data.volume_unit.510300"
    # a configured fund without a file is an error naming it
    (missing,) = by_symbol["588000"]["findings"]
    assert missing["severity"] == "ERROR" and "no price file for symbol 588000" in missing["message"]
    assert doc["pools"][0]["pool"] == "CORE" and doc["pools"][0]["left_out"] == ["588000"]


def test_usage_errors_exit_2_on_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    proc = subprocess.run([sys.executable, "-m", "jobs.ingest", "check", str(missing)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {missing}: no such folder; give the folder of price files "
                                                f"(python -m jobs.ingest check DIR)"]
    proc = subprocess.run([sys.executable, "-m", "jobs.ingest", "check", str(tmp_path), "--calendar", "NOPE"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--calendar NOPE" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def real_check() -> dict:
    if not (SHARED / "510300.csv").is_file():
        pytest.fail(f"the shared real data is missing: expected the cn_etf folder at {SHARED}")
    return check_folder(SHARED)


VENDOR = {"159980", "160520", "510050", "510180"}   # the second schema of the data's README


def test_the_real_data_folder(real_check: dict) -> None:
    doc = real_check
    layouts = {f["symbol"]: f["layout"] for f in doc["files"]}
    funds = {p.stem for p in SHARED.glob("*.csv") if p.stem.isdigit() and len(p.stem) == 6
             and p.stem not in ("000300", "000015")}
    assert funds <= set(layouts)
    assert {s for s, lay in layouts.items() if lay == "cn_etf_vendor"} == VENDOR
    assert all(lay == "cn_etf" for s, lay in layouts.items() if s not in VENDOR)
    assert all(f["volume_unit_shares"] == 100 and f["amount_present"] for f in doc["files"])
    skipped = {o["file"]: o["note"] for o in doc["other_files"]}
    assert "close-only series" in skipped["000300.csv"] and "no date column" in skipped["etf_index_map.csv"]
    assert doc["files"][[f["symbol"] for f in doc["files"]].index("510300")]["corporate_actions"]["factor_file"] \
        == "510300_hfq_factor.csv"
    findings = [x for f in doc["files"] for x in f["findings"]] + doc["findings"]
    worst = {x["severity"] for x in findings}
    assert doc["exit_code"] == (4 if worst & {"ERROR", "FATAL"} else 0)
    # the README's known problem: 160520 misses 323 sessions, an ERROR
    (gap,) = [x for x in findings if x["symbol"] == "160520" and x["check"] == "missing_sessions"]
    assert gap["severity"] == "ERROR" and gap["count"] == 323


@pytest.mark.parametrize("content", [None, "foo;bar\n1;2\n"])
def test_a_folder_without_any_price_file_is_an_error(tmp_path: Path, capsys, content) -> None:
    """An empty folder, or one whose only file has no layout at all, gives a run nothing: exit 4, one line
    naming the folder and the header to add -- never "exit 0: no ERROR"."""
    if content is not None:
        (tmp_path / "510300.csv").write_text(content)
    assert main(["check", str(tmp_path)]) == 4
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if x.startswith("ERROR no_price_file")]
    assert f"no file in {tmp_path} reads as a fund's price file" in line
    assert "date,open,high,low,close,volume,amount" in line
    assert ("1 skipped: 510300.csv" in line) == (content is not None)
    assert "exit 4" in out.splitlines()[-1]
