"""Bad inputs through ``python -m jobs.main``: every one ends in one clear line and its exit code, a
quarantined row, or an accepted run -- never a traceback, never a changed raw file, never a partial value.

The base setup is one pool (CORE) of four real funds copied from ``../shared/data/cn_etf`` (prices and
back-adjustment factors from 2024-06 to 2026-08-03, the dividend table of those funds) into a temporary
folder, with a short walk-forward so a whole run takes a few seconds. Each case copies the base, breaks
one thing, runs the command line once and checks:

* the exit code (2 usage, 3 configuration, 4 data, 0 for a quarantined or accepted input);
* a clear error is exactly one stderr line starting ``error:`` that names the culprit (file, key,
  symbol, date); a quarantined or accepted input prints nothing on stderr;
* no ``Traceback`` anywhere; the input files hash as before;
* nothing partial is stored: no temporary file under the storage folder, nothing at all when the input
  is refused before the run, and no value of the failed pool's session when the run refused it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data" / "cn_etf"
FUNDS = ("510300", "510500", "518880", "513100")
START, END = "2024-06-03", "2026-08-03"   # END: the last row of every copied file, the run's session
POOL = "CORE"


ERROR, QUARANTINED, ACCEPTED = "clear error", "quarantined", "accepted"


# ------------------------------------------------------------------------------------------ the base
def _copy_rows(src: Path, dst: Path) -> None:
    lines = src.read_text(encoding="utf-8").splitlines()
    keep = [lines[0]] + [line for line in lines[1:] if START <= line[:10] <= END]
    dst.write_text("\n".join(keep) + "\n", encoding="utf-8")


def build_base(root: Path) -> None:
    prices = root / "prices"
    prices.mkdir(parents=True)
    for symbol in FUNDS:
        _copy_rows(SHARED / f"{symbol}.csv", prices / f"{symbol}.csv")
        _copy_rows(SHARED / f"{symbol}_hfq_factor.csv", prices / f"{symbol}_hfq_factor.csv")
    text = (SHARED / "platform_dividends.csv").read_text(encoding="utf-8")
    rows = [r for r in csv.DictReader(io.StringIO(text)) if r["code"] in FUNDS and START <= r["ex_date"] <= END]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=text.splitlines()[0].split(","), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (prices / "platform_dividends.csv").write_text(out.getvalue(), encoding="utf-8")
    doc = {
        "extends": str(ROOT / "configs" / "base.yaml"),
        "name": "badinputs",
        "data": {"source": "directory", "directory": "prices", "price_field": "close"},
        "screening": {"min_obs": 4},
        "storage": {"data_dir": "data"},
        "orchestration": {"first_session": "2026-07-01"},
        "wfo": {"train_sessions": 250, "test_sessions": 40, "embargo_sessions": 5,
                "grid": {"top_n": [2], "rebalance_sessions": [5, 10], "ic_lookback": [60], "weighting": ["equal"],
                         "buffer": [0]}},
        "pools": [{"name": POOL, "kind": "A_SHARE", "summary_weight": 1.0, "benchmark": "equal_weight",
                   "symbols": list(FUNDS),
                   "capital": {"target_capital": 3_000_000, "max_single_weight": 0.4, "max_adv_pct": 0.05}}],
    }
    (root / "config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    if not SHARED.is_dir():  # CI has the real data beside the repository: its absence is a failure
        pytest.fail(f"the real data folder {SHARED} is missing; the bad-input suite copies its funds")
    root = tmp_path_factory.mktemp("base")
    build_base(root)
    return root


# --------------------------------------------------------------------------------- breaking helpers
def write(rel: str, content: str | bytes) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return build


def remove(rel: str) -> Callable[[Path], None]:
    return lambda root: (root / rel).unlink()


def lines_of(rel: str, change: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
    """Rewrite the lines (header first) of a file of the setup."""
    def build(root: Path) -> None:
        path = root / rel
        path.write_text("\n".join(change(path.read_text(encoding="utf-8").splitlines())) + "\n", encoding="utf-8")
    return build


def cell(rel: str, date: str, column: str, value: str) -> Callable[[Path], None]:
    """Set one cell of the row dated ``date`` (the first column being the date)."""
    def change(lines: list[str]) -> list[str]:
        header = lines[0].split(",")
        out = list(lines)
        hits = [i for i, line in enumerate(lines) if line.startswith(date + ",")]
        assert hits, f"no row dated {date} in {rel}"
        cells = out[hits[0]].split(",")
        cells[header.index(column)] = value
        out[hits[0]] = ",".join(cells)
        return out
    return lines_of(rel, change)


def config(patch: dict | None = None, *, text: str | None = None, drop: tuple[str, ...] = ()) -> Callable[[Path], None]:
    """Deep-merge ``patch`` into config.yaml (lists replaced), remove top-level ``drop`` keys, or replace
    the whole file by ``text``."""
    def merge(a: dict, b: dict) -> dict:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    def build(root: Path) -> None:
        path = root / "config.yaml"
        if text is not None:
            path.write_text(text.replace("{base}", str(ROOT / "configs" / "base.yaml")), encoding="utf-8")
            return
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        doc = merge(doc, patch or {})
        for key in drop:
            doc.pop(key, None)
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return build


def pool_patch(**changes) -> dict:
    """The config patch replacing keys of the CORE pool."""
    pool = {"name": POOL, "kind": "A_SHARE", "summary_weight": 1.0, "benchmark": "equal_weight",
            "symbols": list(FUNDS),
            "capital": {"target_capital": 3_000_000, "max_single_weight": 0.4, "max_adv_pct": 0.05}}
    pool.update(changes)
    return {"pools": [pool]}


def steps(*builds: Callable[[Path], None]) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        for b in builds:
            b(root)
    return build


POSITIONS = config({"positions": {"source": "directory", "directory": "positions"}})


def positions(text: str | bytes) -> Callable[[Path], None]:
    return steps(POSITIONS, write(f"positions/{POOL}/{END}.csv", text))


def _parquet_of(rel: str) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        frame = pd.read_csv(root / rel, dtype=str)
        frame.to_parquet((root / rel).with_suffix(".parquet"))
    return build


def _calendar_dates() -> dict[str, str]:
    from rotation_platform.calendars import get_calendar

    cal = get_calendar("XSHG")
    today = pd.Timestamp.now(tz="Asia/Shanghai").tz_localize(None).normalize()
    out = {"horizon": str(cal.last_session.date()),
           "beyond": str((cal.last_session + pd.Timedelta(days=40)).date())}
    if today < cal.last_session:
        out["future"] = str(cal.next_session(today).date())
    return out


DATES = _calendar_dates()


# ------------------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Case:
    """One bad input. ``culprit``: substrings of the stderr line (``{root}`` is the case's folder).
    ``before_run``: refused before the run starts (nothing may be stored at all)."""

    id: str
    build: Callable[[Path], None] | None
    kind: str
    code: int
    culprit: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    before_run: bool = True
    quarantined: tuple[str, str, str] | None = None  # (symbol, reason, date) of the quarantined row


def usage(id, args, *culprit, build=None, env=None) -> Case:
    return Case(id, build, ERROR, 2, culprit, tuple(args), env or {})


def conf(id, build, *culprit, env=None, args=()) -> Case:
    return Case(id, build, ERROR, 3, culprit, tuple(args), env or {})


def env_case(id, env, *culprit) -> Case:
    return Case(id, None, ERROR, 3, culprit, (), env)


def data(id, build, *culprit, args=(), before_run=True) -> Case:
    return Case(id, build, ERROR, 4, culprit, tuple(args), {}, before_run)


P = "{root}/prices/"
F510300 = P + "510300.csv"
DAY = "2025-06-03"   # a session inside the copied range

CASES: list[Case] = [
    # ------------------------------------------------------------------------- command-line flags
    usage("session_month_13", ["--session", "2026-13-45"], "--session 2026-13-45: not a date (YYYY-MM-DD)"),
    usage("session_word", ["--session", "yesterday"], "--session yesterday: not a date"),
    usage("session_compact", ["--session", "20260803"], "--session 20260803: not a date"),
    usage("session_with_time", ["--session", "2026-08-03T15:00"], "--session 2026-08-03T15:00: not a date"),
    usage("session_saturday", ["--session", "2026-08-01"], "2026-08-01 is not an XSHG trading session (Saturday)",
          "previous session is 2026-07-31", "next is 2026-08-03"),
    usage("session_holiday", ["--session", "2026-10-01"], "2026-10-01 is not an XSHG trading session",
          "holiday", "previous session is 2026-09-30"),
    usage("session_beyond_horizon", ["--session", DATES["beyond"]], f"--session {DATES['beyond']}",
          "beyond its horizon", f"ends at {DATES['horizon']}"),
    usage("session_before_calendar", ["--session", "1999-01-04"], "1999-01-04 is outside the XSHG calendar",
          "before its first session"),
    usage("session_before_first_partition", ["--session", "2025-01-02"], "--session 2025-01-02",
          "orchestration.first_session = 2026-07-01"),
    *([usage("session_not_closed", ["--session", DATES["future"]], f"session {DATES['future']} of {POOL}",
             "has not closed yet", "add --force")] if "future" in DATES else []),
    usage("sessions_zero", ["--sessions", "0"], "--sessions 0: must be at least 1"),
    usage("sessions_negative", ["--sessions", "-3"], "--sessions -3: must be at least 1"),
    usage("sessions_word", ["--sessions", "many"], "--sessions", "'many'"),
    usage("sessions_before_first_partition", ["--session", END, "--sessions", "500"], "--sessions 500",
          "orchestration.first_session"),
    usage("unknown_flag", ["--sesion", END], "unrecognized arguments: --sesion"),
    usage("json_is_folder", ["--json", "{root}"], "--json {root} is a folder"),
    usage("json_folder_missing", ["--json", "{root}/nowhere/out.json"], "--json {root}/nowhere/out.json",
          "does not exist"),
    conf("pool_unknown", None, "unknown pools ['QDII']", "configured: ['CORE']", args=("--pools", "QDII")),
    conf("pool_lower_case", None, "unknown pools ['core']", args=("--pools", "core")),
    # ------------------------------------------------------------------------------ configuration
    conf("config_missing", None, "{root}/missing.yaml", "config file not found",
         args=("--config", "{root}/missing.yaml")),
    conf("config_is_folder", None, "{root}/prices", "is a folder", args=("--config", "{root}/prices")),
    conf("config_empty", config(text=""), "{root}/config.yaml", "name: required key is missing"),
    conf("yaml_unclosed_bracket", config(text="extends: {base}\nname: x\npools: [\n  - {name: A\n"),
         "{root}/config.yaml", "line ", "YAML syntax error"),
    conf("yaml_tab_indent", config(text="extends: {base}\nname: x\nbacktest:\n\tslippage_bps: 1\n"),
         "{root}/config.yaml", "line 4", "YAML syntax error"),
    conf("yaml_duplicate_key", config(text="extends: {base}\nname: a\nname: b\n"), "{root}/config.yaml",
         "duplicate key 'name'"),
    conf("yaml_top_level_list", config(text="- a\n- b\n"), "{root}/config.yaml", "expected a mapping"),
    conf("yaml_not_utf8", write("config.yaml", "name: caf\xe9\n".encode("latin-1")), "{root}/config.yaml",
         "not UTF-8"),
    conf("unknown_section", config({"backtst": {"slippage_bps": 1}}), "backtst", "unknown key",
         "did you mean 'backtest'"),
    conf("unknown_nested_key", config({"backtest": {"slipage_bps": 1}}), "backtest.slipage_bps",
         "did you mean 'slippage_bps'"),
    conf("wrong_type_number", config({"backtest": {"slippage_bps": "five"}}), "backtest.slippage_bps",
         "valid number"),
    conf("wrong_type_int", config({"factors": {"lag": "zero"}}), "factors.lag"),
    conf("wrong_choice", config({"data": {"source": "ftp"}}), "data.source"),
    conf("storage_backend_unknown", config({"storage": {"backend": "oracle"}}), "storage.backend"),
    conf("first_session_not_a_date", config({"orchestration": {"first_session": "soon"}}),
         "orchestration.first_session"),
    conf("pool_weights_not_one", config(pool_patch(summary_weight=0.5)), "summary weights must add up to 1"),
    conf("pool_unknown_key", config(pool_patch(sybmols=["510300"])), "[0:CORE].sybmols", "unknown key"),
    conf("pool_name_missing", config({"pools": [{"kind": "A_SHARE", "symbols": list(FUNDS),
                                                  "summary_weight": 1.0}]}), "pools[0].name",
         "required key is missing"),
    conf("secret_in_yaml", config({"storage": {"mysql_password": "hunter2"}}), "storage.mysql_password",
         "ROTATION_STORAGE__MYSQL_PASSWORD"),
    conf("extends_missing", config(text="extends: nowhere.yaml\nname: x\n"), "{root}/config.yaml",
         "extends: config file not found", "{root}/nowhere.yaml"),
    conf("extends_itself", config(text="extends: config.yaml\nname: x\n"), "circular 'extends'"),
    conf("positions_directory_missing_key", config({"positions": {"source": "directory"}}), "positions",
         "needs 'directory'"),
    # --------------------------------------------------------------------------- env overrides
    env_case("env_not_a_number", {"ROTATION_BACKTEST__SLIPPAGE_BPS": "abc"}, "backtest.slippage_bps",
             "set by ROTATION_BACKTEST__SLIPPAGE_BPS='abc'"),
    env_case("env_misspelt_key", {"ROTATION_BACKTEST__SLIPAGE_BPS": "1"}, "backtest.slipage_bps",
             "did you mean 'slippage_bps'", "ROTATION_BACKTEST__SLIPAGE_BPS"),
    env_case("env_unknown_pool", {"ROTATION_POOLS__NOPE__CAPITAL__TARGET_CAPITAL": "1"},
             "ROTATION_POOLS__NOPE__CAPITAL__TARGET_CAPITAL", "no item named 'nope'"),
    env_case("env_bad_yaml", {"ROTATION_WFO__GRID__TOP_N": "[1,"}, "ROTATION_WFO__GRID__TOP_N",
             "cannot parse value '[1,'"),
    env_case("env_empty_segment", {"ROTATION_FACTORS____LAG": "1"}, "ROTATION_FACTORS____LAG", "empty key segment"),
    env_case("env_section_replaced", {"ROTATION_BACKTEST": "1"}, "backtest", "ROTATION_BACKTEST='1'"),
    env_case("env_whole_pool", {"ROTATION_POOLS__CORE": "1"}, "ROTATION_POOLS__CORE",
             "cannot replace a whole list item"),
    env_case("env_pool_value_type", {"ROTATION_POOLS__CORE__CAPITAL__TARGET_CAPITAL": "lots"},
             "pools[0:CORE].capital.target_capital", "ROTATION_POOLS__CORE__CAPITAL__TARGET_CAPITAL='lots'"),
    env_case("env_storage_backend", {"ROTATION_STORAGE__BACKEND": "oracle"}, "storage.backend",
             "ROTATION_STORAGE__BACKEND='oracle'"),
    # ------------------------------------------------------------------------------ price files
    data("price_file_missing", remove("prices/518880.csv"), "no price file for symbol 518880", "{root}/prices"),
    data("price_file_is_folder", steps(remove("prices/518880.csv"), lambda r: (r / "prices/518880.csv").mkdir()),
         "no price file for symbol 518880"),
    data("price_empty_file", write("prices/510500.csv", ""), P + "510500.csv", "empty"),
    data("price_binary_garbage", write("prices/510500.csv", bytes(range(256)) * 64), P + "510500.csv",
         "binary content"),
    data("price_not_text", write("prices/510500.csv", bytes(range(0x80, 0x100)) * 64), P + "510500.csv",
         "neither UTF-8 nor GB18030"),
    data("price_unknown_layout", write("prices/510500.csv", "day,price,qty\n2026-08-03,1.0,100\n"),
         P + "510500.csv", "unknown price file layout", "found columns [day, price, qty]"),
    data("price_repeated_column",
         lines_of("prices/510300.csv", lambda ls: [ls[0].replace("adjust_factor", "close")] + ls[1:]),
         F510300, "'close' appears 2 times"),
    data("price_bad_date", cell("prices/510300.csv", DAY, "trade_date", "2025-13-45"), F510300,
         "symbol 510300", "'2025-13-45'", "line "),
    data("price_tz_aware_row", cell("prices/510300.csv", DAY, "trade_date", "2025-06-03T15:00:00+08:00"),
         F510300, "symbol 510300", "'2025-06-03T15:00:00+08:00' carries a time zone", "line "),
    data("price_mixed_offsets", lines_of("prices/510300.csv", lambda ls: [ls[0]] + [
        line[:10] + ("T15:00:00+08:00" if i % 2 else "T03:00:00-04:00") + line[10:]
        for i, line in enumerate(ls[1:])]),
         F510300, "carries a time zone", "data row 1 (line 2 of the file)"),
    data("price_utc_z", cell("prices/510300.csv", DAY, "trade_date", "2025-06-03T07:00:00Z"), F510300,
         "carries a time zone"),
    data("price_text_close", cell("prices/510300.csv", DAY, "close", "abc"), F510300, "date 2025-06-03",
         "'close': 'abc'"),
    data("price_two_dots_volume", cell("prices/510300.csv", DAY, "volume", "1.2.3"), F510300, "'volume': '1.2.3'"),
    data("price_ragged_row", cell("prices/510300.csv", DAY, "source", "finshare,x,y"), F510300, "malformed CSV"),
    data("price_csv_and_parquet", _parquet_of("prices/510300.csv"), "symbol 510300 has several price files",
         "510300.parquet"),
    data("price_corrupt_parquet", steps(remove("prices/510300.csv"),
                                        write("prices/510300.parquet", b"PAR1 not a parquet file PAR1")),
         P + "510300.parquet", "unreadable Parquet"),
    data("price_bad_date_with_session", cell("prices/510300.csv", DAY, "trade_date", "2025-06-31"), F510300,
         "'2025-06-31'", args=("--session", END)),
    data("price_tz_with_session", cell("prices/510500.csv", DAY, "trade_date", "2025-06-03 15:00+0800"),
         P + "510500.csv", "carries a time zone", args=("--session", END)),
    data("price_header_only", lines_of("prices/510500.csv", lambda ls: ls[:1]), P + "510500.csv", "no data rows",
         before_run=False),
    data("price_all_non_positive", lines_of("prices/510500.csv", lambda ls: [ls[0]] + [
        ",".join([c[0], "-1", "-1", "-1", "-1", *c[5:]]) for c in (line.split(",") for line in ls[1:])]),
         P + "510500.csv", "symbol 510500", "no_valid_rows", before_run=False),
    # ------------------------------------------------------------------------ corporate actions
    data("factor_text", cell("prices/518880_hfq_factor.csv", DAY, "hfq_factor", "abc"),
         P + "518880_hfq_factor.csv", "'hfq_factor': 'abc'"),
    data("factor_negative", cell("prices/518880_hfq_factor.csv", DAY, "hfq_factor", "-2"),
         P + "518880_hfq_factor.csv", "symbol 518880", "positive"),
    data("factor_duplicate_date", lines_of("prices/518880_hfq_factor.csv", lambda ls: ls + ls[-1:]),
         P + "518880_hfq_factor.csv", "date repeated"),
    data("factor_wrong_header", lines_of("prices/518880_hfq_factor.csv", lambda ls: ["day,factor_x"] + ls[1:]),
         P + "518880_hfq_factor.csv", "lacks a column trade_date / date"),
    data("factor_empty", write("prices/518880_hfq_factor.csv", ""), P + "518880_hfq_factor.csv", "cannot read"),
    data("factor_tz_date", cell("prices/518880_hfq_factor.csv", DAY, "trade_date", "2025-06-03T00:00:00+08:00"),
         P + "518880_hfq_factor.csv", "carries a time zone", args=("--session", END)),
    data("splits_bad_ratio", write("prices/platform_splits.csv",
                                   "code,name,year,split_date,split_type,raw_text,split_ratio\n"
                                   "510300,x,2025年,2025-06-03,份额分拆,1:2,two\n"),
         P + "platform_splits.csv", "'split_ratio': 'two'"),
    data("splits_missing_column", write("prices/platform_splits.csv", "code,ratio\n510300,2\n"),
         P + "platform_splits.csv", "lacks a column"),
    data("dividends_negative", write("prices/platform_dividends.csv",
                                     "code,name,year,record_date,ex_date,raw_text,dividend_per_share,payment_date\n"
                                     "510300,x,2025年,2025-06-17,2025-06-18,x,-0.1,2025-06-27\n"),
         P + "platform_dividends.csv", "symbol 510300", "non-negative"),
    data("dividends_bad_date", write("prices/platform_dividends.csv",
                                     "code,name,year,record_date,ex_date,raw_text,dividend_per_share,payment_date\n"
                                     "510300,x,2025年,2025-06-17,June 18,x,0.1,2025-06-27\n"),
         P + "platform_dividends.csv", "'June 18'"),
    # ----------------------------------------------------------------------------- positions files
    data("positions_no_cash_row", positions("symbol,shares,cash\n510300,1000,\n"),
         f"{{root}}/positions/{POOL}/{END}.csv", "CASH"),
    data("positions_unknown_symbol", positions("symbol,shares,cash\n999999,1000,\nCASH,,1000\n"),
         f"{{root}}/positions/{POOL}/{END}.csv", "999999"),
    data("positions_negative_shares", positions("symbol,shares,cash\n510300,-100,\nCASH,,1000\n"),
         f"{{root}}/positions/{POOL}/{END}.csv", "510300"),
    data("positions_text_shares", positions("symbol,shares,cash\n510300,many,\nCASH,,1000\n"),
         f"{{root}}/positions/{POOL}/{END}.csv", "510300"),
    data("positions_binary", positions(bytes(range(256)) * 16), f"{{root}}/positions/{POOL}/{END}.csv"),
    # --------------------------------------------------------- readable rows the quality gate quarantines
    Case("negative_volume_quarantined", cell("prices/510300.csv", DAY, "volume", "-5"), QUARANTINED, 0,
         before_run=False, quarantined=("510300", "negative_volume", DAY)),
    Case("low_above_close_quarantined", cell("prices/510500.csv", DAY, "low", "99"), QUARANTINED, 0,
         before_run=False, quarantined=("510500", "ohlc_inconsistent", DAY)),
    Case("blank_close_quarantined", cell("prices/513100.csv", DAY, "close", ""), QUARANTINED, 0,
         before_run=False, quarantined=("513100", "missing_price", DAY)),
    Case("saturday_row_quarantined", cell("prices/518880.csv", DAY, "trade_date", "2025-06-07"), QUARANTINED, 0,
         before_run=False, quarantined=("518880", "non_session_date", "2025-06-07")),
    # ----------------------------------------------------------------------- inputs that are fine
    Case("crlf_bom_and_blank_lines_accepted", lines_of(
        "prices/510300.csv", lambda ls: ["\ufeff" + ls[0].replace(",", " ,") + "\r"] + [line + "\r" for line in ls[1:]]
        + ["", ""]), ACCEPTED, 0, before_run=False),
]


# ---------------------------------------------------------------------------------------- running
def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.relative_to(root).parts[0] not in ("data", "home")}


def _env(root: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATION_")}
    home = root / "home"
    env.update({"DAGSTER_HOME": str(home),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), **extra})
    return env


def run_cli(root: Path, args: tuple[str, ...], env: dict[str, str], module: str = "jobs.main"):
    home = root / "home"
    home.mkdir(exist_ok=True)
    shutil.copy(ROOT / "configs" / "dagster.yaml", home / "dagster.yaml")
    argv = [a.replace("{root}", str(root)) for a in args]
    if module == "jobs.main" and not any(a == "--config" for a in argv):
        argv = ["--config", str(root / "config.yaml"), *argv]
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=ROOT, env=_env(root, env),
                          capture_output=True, text=True, timeout=600)


def _partial(data_dir: Path) -> list[str]:
    """Temporary files of unfinished writes (the run locks' folder ``.locks`` and the value digests'
    ``.digests`` are the store's own)."""
    return [p.as_posix() for p in data_dir.rglob("*")
            if not {".locks", ".digests", ".stats"} & set(p.relative_to(data_dir).parts)
            and (p.name.startswith(".") or ".tmp" in p.name)]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, base: Path, tmp_path: Path) -> None:
    root = tmp_path / "case"
    shutil.copytree(base, root)
    if case.build is not None:
        case.build(root)
    before = _hashes(root)
    proc = run_cli(root, case.args, case.env)
    out, err = proc.stdout, proc.stderr
    assert "Traceback" not in out + err, out[-3000:] + err[-3000:]
    assert proc.returncode == case.code, f"exit {proc.returncode}\n{out[-3000:]}\n{err[-3000:]}"
    lines = [line for line in err.splitlines() if line.strip()]
    data_dir = root / "data"
    if case.kind == ERROR:
        assert len(lines) == 1, err
        line = lines[0]
        assert line.startswith("error: "), line
        for part in case.culprit:
            assert part.replace("{root}", str(root)) in line, f"{part!r} not in: {line}"
    else:
        assert lines == [], err
    assert _hashes(root) == before, "an input file changed"
    if data_dir.exists():
        assert _partial(data_dir) == []
    if case.before_run:
        assert not data_dir.exists() or not any(data_dir.rglob("*")), sorted(data_dir.rglob("*"))[:5]
    elif case.kind == ERROR:  # refused in the run: the failed pool's session has no prices value
        assert not list((data_dir / "prices" / POOL).glob(f"{END}*"))
    if case.kind == QUARANTINED:
        table = pd.read_parquet(data_dir / "price_quarantine" / POOL / f"{END}.parquet")
        symbol, reason, day = case.quarantined
        rows = table[(table["symbol"] == symbol) & (table["reason"] == reason)]
        assert len(rows) == 1 and str(rows["date"].iloc[0])[:10] == day, table
        assert rows["file"].iloc[0] == str(root / "prices" / f"{symbol}.csv")
    if case.kind in (QUARANTINED, ACCEPTED):
        assert list((data_dir / "target_portfolio" / POOL).glob(f"{END}.*")), "the run stored no target"
        assert f"{POOL} target for" in out


def test_the_table_covers_enough_bad_inputs() -> None:
    counts = Counter(c.kind for c in CASES)
    assert len(CASES) >= 60 and counts[ERROR] >= 55 and counts[QUARANTINED] >= 1, counts
    assert len({c.id for c in CASES}) == len(CASES)


# ---------------------------------------------------------------------------------------- --debug
@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_prints_the_trace_then_the_line(how: str, base: Path, tmp_path: Path) -> None:
    root = tmp_path / "case"
    shutil.copytree(base, root)
    args = ("--session", "2026-13-45", *(("--debug",) if how == "flag" else ()))
    proc = run_cli(root, args, {"ROTATION_DEBUG": "1"} if how == "env" else {})
    assert proc.returncode == 2
    assert proc.stderr.startswith("Traceback (most recent call last):") and "UsageError" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "error: --session 2026-13-45: not a date (YYYY-MM-DD)"


def test_debug_shows_where_a_data_error_was_raised(base: Path, tmp_path: Path) -> None:
    root = tmp_path / "case"
    shutil.copytree(base, root)
    cell("prices/510300.csv", DAY, "trade_date", "2025-06-03T15:00:00+08:00")(root)
    proc = run_cli(root, ("--debug",), {})
    assert proc.returncode == 4 and "Traceback" in proc.stderr
    assert "rotation_platform/data/sources/directory.py" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: file {root}/prices/510300.csv, symbol 510300")


# ------------------------------------------------------------------------ the other command lines
def test_positions_and_snapshots_commands_give_one_line_and_their_code(base: Path, tmp_path: Path) -> None:
    root = tmp_path / "case"
    shutil.copytree(base, root)
    bad = root / "positions.csv"
    bad.write_text("symbol,shares,cash\n510300,1000,\n", encoding="utf-8")
    cfg = ("--config", str(root / "config.yaml"))
    expected = [
        ("jobs.positions", ("check", str(bad), "--pool", POOL, "--session", END, *cfg), 4, str(bad)),
        ("jobs.positions", ("check", str(bad), "--pool", "NOPE", "--session", END, *cfg), 3, "unknown pool 'NOPE'"),
        ("jobs.positions", ("check", str(bad), "--pool", POOL, "--session", "2026-02-30", *cfg), 2,
         "--session 2026-02-30: not a date"),
        ("jobs.positions", ("check", "--pool", POOL, "--session", END, *cfg), 2, "check needs the positions file"),
        ("jobs.snapshots", ("verify", "31/12/2024", *cfg), 2, "session 31/12/2024: not a date"),
        ("jobs.snapshots", ("verify", "2024-12-31", *cfg), 4, "no snapshot for session 2024-12-31"),
        ("jobs.snapshots", ("list", "--config", str(root / "missing.yaml")), 3, str(root / "missing.yaml")),
    ]
    for module, args, code, culprit in expected:
        proc = run_cli(root, args, {}, module=module)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == code and len(lines) == 1 and culprit in lines[0], (module, args, proc.stderr)
        assert "Traceback" not in proc.stdout + proc.stderr
    assert not (root / "data").exists()

