"""Check a folder of price files before a run: what each file was understood to be, and what the
data-quality gate finds in it. Nothing is computed beyond the gate and nothing is written.

    python -m jobs.ingest check DIR [--config FILE] [--calendar CODE] [--json] [--verbose]

Per price file: the symbol its name maps to, the layout, encoding, delimiter and header recognised, the
rows and their date range and order, the volume unit (shares per unit, and whether it came from the
layout or ``data.volume_unit``), whether an amount column is present, the title/footer lines skipped, the
corporate actions found (``<symbol>_hfq_factor.csv``, ``platform_splits.csv`` / ``platform_dividends.csv``
rows, an ``Adj Close`` or Alpha Vantage's adjusted columns) and the adjustment the pipeline makes of them;
then the gate's findings for the fund: the same :func:`~rotation_platform.data.pipeline.load_pool_prices`
that every run uses (quality checks, adjustment, jump and corporate-action checks, data ended).

Without ``--config`` every price file of DIR is checked as one group on ``--calendar`` (default XSHG);
files that are not fund prices (a close-only index series, a table without dates) are listed and skipped.
With ``--config`` the configured pools are checked, each on its own calendar with the configuration's
``data`` settings (quality thresholds, ``volume_unit``, ``symbol_map``): a configured fund without a file is
an error, a file no pool names is listed.

Exit 0 when no finding is ERROR or FATAL, 4 (data) when one is, 2 for a usage error (no such folder, an
unknown calendar), 3 for a configuration error. ``--json`` prints one JSON document instead of the text.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from jobs.cli import EXIT_DATA, EXIT_OK, Parser, parser, run_main
from rotation_platform.data.sources.base import PriceSource
from rotation_platform.errors import CalendarError, RotationError, UnknownLayoutError, UsageError

__all__ = ["build_parser", "main", "run", "check_folder"]

_SEVERITIES = ("FATAL", "ERROR", "WARN", "INFO")
#: column names that date a row in some known layout (a table without any of them is not a price file)
_DATE_NAMES = frozenset({"date", "trade_date", "timestamp", "日期", "datetime", "time"})
_PRICE_NAMES = frozenset({"open", "high", "low", "open_price", "high_price", "low_price", "开盘", "最高", "最低",
                          "1. open", "2. high", "3. low"})


def build_parser() -> Parser:
    p = parser("python -m jobs.ingest", __doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    check = sub.add_parser("check", help="what each price file of a folder is understood to be, and the gate's "
                                         "findings (exit 4 on an ERROR)")
    check.add_argument("directory", metavar="DIR", help="the folder of price files")
    check.add_argument("--config", help="check the configured pools' funds with the configuration's data settings")
    check.add_argument("--calendar", default=None, help="exchange calendar without --config (default XSHG)")
    check.add_argument("--json", action="store_true", help="print one JSON document")
    check.add_argument("--verbose", action="store_true", help="list INFO findings too")
    check.add_argument("--debug", action="store_true", help="print the full traceback of an error")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), run, argv)


def run(args) -> int:
    folder = Path(args.directory)
    if not folder.is_dir():
        raise UsageError(f"{args.directory}: no such folder; give the folder of price files "
                         f"(python -m jobs.ingest check DIR)")
    if args.config and args.calendar:
        raise UsageError("--calendar is for a check without --config; the configuration's pools name their "
                         "calendars")
    result = check_folder(folder, config=args.config, calendar=args.calendar)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    else:
        print(render(result, verbose=args.verbose))
    return int(result["exit_code"])


# ------------------------------------------------------------------------------------------- check
def _issue(check: str, severity: str, message: str, symbol: str | None = None, file: str | None = None
           ) -> dict[str, object]:
    return {"check": check, "severity": severity, "symbol": symbol, "file": file, "count": 1, "dates": [],
            "lines": [], "message": message}


def _error_issue(exc: BaseException, symbol: str | None, file: str | None) -> dict[str, object]:
    check = "unknown_layout" if isinstance(exc, UnknownLayoutError) else "unreadable"
    text = exc.one_line() if isinstance(exc, RotationError) else f"{type(exc).__name__}: {exc}"
    return _issue(check, "ERROR", text, symbol, file)


def _not_a_price_file(exc: UnknownLayoutError, path: Path) -> str | None:
    """Why a file no layout matches is not a fund's price file at all (None: it looks like one -- its rows
    are a date and four or more numbers, whatever its header says)."""
    from rotation_platform.data.sources.layouts import _cells, _is_data_row, sniff_text

    try:
        data = path.read_bytes()
        text = next(data.decode(e) for e in ("utf-8-sig", "gb18030") if _decodes(data, e))
    except (OSError, StopIteration):
        return None
    shape = sniff_text(text)
    if shape.body:
        cells = _cells(shape.body[0], shape.delimiter)
        if _is_data_row(cells) and len(cells) >= 5:
            return None
    keys = {str(c).strip().casefold() for c in exc.found}
    if not keys & _DATE_NAMES:
        return "no date column: not a price file (skipped)"
    if "close" in keys and not keys & _PRICE_NAMES:
        return "a close-only series (an index or benchmark?), not a fund's price file (skipped)"
    return None


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def _calendar(code: str):
    from rotation_platform.calendars import get_calendar

    try:
        return get_calendar(code)
    except CalendarError as exc:
        raise UsageError(f"--calendar {code}: {exc.one_line()}") from None


def _check_pool():
    from rotation_platform.config.models import CapitalConfig, PoolConfig, PoolKind

    return PoolConfig(name="CHECK", kind=PoolKind.OTHER, symbols=("A0", "B0"), summary_weight=0.0,
                      capital=CapitalConfig(target_capital=1.0, max_single_weight=1.0, max_adv_pct=1.0))


def check_folder(folder: str | Path, *, config: str | Path | None = None, calendar: str | None = None,
                 today=None) -> dict[str, object]:
    """The check of one folder as a JSON-able document (see the module docstring); ``today`` bounds real
    dates as in :func:`~rotation_platform.data.pipeline.load_pool_prices`."""
    from rotation_platform.config.models import DataConfig
    from rotation_platform.data.sources.directory import (
        DIVIDENDS_FILE,
        FACTOR_SUFFIX,
        NAV_FOLDER,
        SPLITS_FILE,
        DirectorySource,
        read_price_file,
    )

    folder = Path(folder)
    if config is not None:
        from rotation_platform.config import load_config

        cfg = load_config(config)
        data_cfg = cfg.data.model_copy(update={"directory": folder})
        groups = [(pool.name, pool) for pool in cfg.pools]
        source_calendar = groups[0][1].calendar if groups else "XSHG"
    else:
        code = calendar or "XSHG"
        _calendar(code)
        data_cfg = DataConfig(source="directory", directory=folder)
        groups = []
        source_calendar = code
    source = DirectorySource.from_config(data_cfg, source_calendar)
    index = source.price_files()

    issues: list[dict[str, object]] = []
    files: dict[str, dict[str, object]] = {}      # symbol -> file entry
    other: list[dict[str, object]] = []
    companions = {SPLITS_FILE, DIVIDENDS_FILE}

    wanted: list[str]
    if config is not None:
        wanted = list(dict.fromkeys(s for _, pool in groups for s in pool.symbols))
        listed = {s.casefold() for s in wanted}
        for symbol, paths in index.items():
            if symbol.casefold() not in listed:
                for path in paths:
                    other.append({"file": path.name, "note": f"holds {symbol}, which no configured pool names"})
    else:
        wanted = sorted(index)

    raws: dict[str, object] = {}
    for symbol in wanted:
        entry: dict[str, object] = {"symbol": symbol, "file": None, "findings": []}
        files[symbol] = entry
        try:
            path = source.price_file(symbol, index)
        except RotationError as exc:
            entry["findings"].append(_error_issue(exc, symbol, None))
            continue
        entry["file"] = path.name
        try:
            raw = read_price_file(path, symbol, volume_unit=data_cfg.volume_unit)
        except UnknownLayoutError as exc:
            why = _not_a_price_file(exc, path) if config is None else None
            if why is not None:
                del files[symbol]
                other.append({"file": path.name, "note": why})
                continue
            entry["findings"].append(_error_issue(exc, symbol, str(path)))
            continue
        except RotationError as exc:
            entry["findings"].append(_error_issue(exc, symbol, str(path)))
            continue
        source._raw[symbol] = raw
        raws[symbol] = raw
        entry.update(_describe_raw(raw))
        actions: dict[str, object] = {}
        factor_file = folder / f"{symbol}{FACTOR_SUFFIX}"
        if factor_file.is_file():
            actions["factor_file"] = factor_file.name
        actions.update({f"in_file_{k}": v for k, v in (raw.meta.get("file_actions") or {}).items()})
        try:
            known = source.corporate_actions([symbol])
        except RotationError as exc:
            entry["findings"].append(_error_issue(exc, symbol, exc.file))
            raws.pop(symbol)
        else:
            for name, table in (("splits", known.splits), ("dividends", known.dividends)):
                if len(table):
                    actions[name] = int(len(table))
        entry["corporate_actions"] = actions

    for path in sorted(folder.iterdir()):
        if path.is_dir():
            if path.name == NAV_FOLDER:
                other.append({"file": f"{path.name}/", "note": "net asset values (read for premium/discount)"})
            continue
        if path.name in companions or path.name.endswith(FACTOR_SUFFIX):
            continue
        if any(path in paths for paths in index.values()) or any(o["file"] == path.name for o in other):
            continue
        other.append({"file": path.name, "note": "not a price file name (.csv, .txt or .parquet): skipped"})

    if config is None:
        pool = _check_pool().model_copy(update={"calendar": source_calendar, "symbols": tuple(files)})
        groups = [("CHECK", pool)]
    pools_out = []
    for name, pool in groups:
        symbols = tuple(s for s in pool.symbols if s in raws)
        outcome = {"pool": name, "calendar": pool.calendar, "symbols": list(symbols),
                   "left_out": [s for s in pool.symbols if s not in raws]}
        pools_out.append(outcome)
        if not symbols:
            outcome["note"] = "no readable price file: the gate did not run"
            continue
        outcome.update(_gate(source, pool.model_copy(update={"symbols": symbols}), data_cfg, raws, files, issues,
                             today))

    if not any(outcome["symbols"] for outcome in pools_out) and not any(
            f["severity"] in ("ERROR", "FATAL") for entry in files.values() for f in entry["findings"]):
        # nothing in the folder reads as a fund's price file: there is nothing a run could use
        skipped = [o["file"] for o in other]
        issues.append(_issue("no_price_file", "ERROR",
                             f"no file in {folder} reads as a fund's price file"
                             + (f" ({len(skipped)} skipped: {', '.join(skipped[:5])}"
                                f"{' ...' if len(skipped) > 5 else ''})" if skipped else "")
                             + "; give one <symbol>.csv per fund in a known layout (docs/data-layouts.md), e.g. with "
                               "the header date,open,high,low,close,volume,amount", file=str(folder)))
    all_findings = [f for entry in files.values() for f in entry["findings"]] + issues
    counts = {sev: sum(1 for f in all_findings if f["severity"] == sev) for sev in _SEVERITIES}
    code = EXIT_DATA if counts["FATAL"] or counts["ERROR"] else EXIT_OK
    return {"directory": str(folder.resolve()), "config": None if config is None else str(config),
            "calendar": source_calendar if config is None else sorted({p.calendar for _, p in groups}),
            "files": [files[s] for s in wanted if s in files], "other_files": other, "pools": pools_out,
            "findings": issues, "counts": counts, "exit_code": code}


def _describe_raw(raw) -> dict[str, object]:
    meta = raw.meta
    return {"layout": raw.layout, "encoding": meta.get("encoding"), "delimiter": meta.get("delimiter"),
            "header": meta.get("header"), "rows": meta.get("rows"), "first": meta.get("first"),
            "last": meta.get("last"), "order": meta.get("order"), "volume_unit_shares": meta.get("volume_unit_shares"),
            "volume_unit_source": meta.get("volume_unit_source"), "amount_present": meta.get("amount_present"),
            "skipped_lines": list(meta.get("skipped_lines") or ()), "title": meta.get("title"),
            "vendor_adjustment": meta.get("vendor_adjustment")}


class _Prepared(PriceSource):
    """The files already read, behind the price-source interface (the pipeline reads nothing twice)."""

    synthetic = False

    def __init__(self, source, raws: Mapping[str, object]):
        self._source = source
        self._raws = raws
        self.name = source.name

    def read(self, symbols):
        return {s: self._raws[s] for s in symbols}

    def corporate_actions(self, symbols):
        return self._source.corporate_actions(symbols)

    def describe(self):
        return self._source.describe()


def _gate(source, pool, data_cfg, raws, files, issues, today) -> dict[str, object]:
    """Run the pipeline's load on the pool's readable files and file its findings under each fund."""
    from rotation_platform.data.pipeline import load_pool_prices
    from rotation_platform.errors import DataQualityError

    loaded = None
    try:
        loaded = load_pool_prices(_Prepared(source, raws), pool, data_cfg, today=today)
        report = loaded.report
    except DataQualityError as exc:
        report = exc.report
        if report is None:
            issues.append(_error_issue(exc, exc.symbol, exc.file))
            return {"worst": "FATAL"}
    except RotationError as exc:
        issues.append(_error_issue(exc, exc.symbol, exc.file))
        return {"gate": "failed"}
    for finding in report.findings:
        item = finding.to_dict()
        target = files.get(finding.symbol) if finding.symbol else None
        if target is not None:
            target["findings"].append(item)
        else:
            issues.append(item)
    worst = report.worst_severity
    out: dict[str, object] = {"worst": worst.name if worst is not None else None, "counts": dict(report.counts)}
    if loaded is not None:
        events = loaded.actions.events
        for symbol, adjustment in loaded.adjustments.items():
            entry = files.get(symbol)
            if entry is None:
                continue
            mine = events[events["symbol"] == symbol]
            entry["adjustment"] = {"method": adjustment.method,
                                   "splits": int((mine["kind"] == "split").sum()),
                                   "dividends": int((mine["kind"] == "dividend").sum())}
        out["sessions"] = [loaded.panel.meta.get("start"), loaded.panel.meta.get("end")]
    return out


# ------------------------------------------------------------------------------------------ output
def _unit(entry: Mapping[str, object]) -> str:
    unit = entry.get("volume_unit_shares")
    what = "shares" if unit == 1 else f"x{unit} shares (lots)" if unit == 100 else f"x{unit} shares"
    return f"volume in {what} ({entry.get('volume_unit_source')})"


def _delimiter(value: object) -> str:
    return {",": "comma", "\t": "tab", ";": "semicolon", None: "-"}.get(value, repr(value))  # type: ignore[arg-type]


def render(result: Mapping[str, object], verbose: bool = False) -> str:
    """The check as text for a terminal."""
    lines: list[str] = []
    cal = result["calendar"]
    scope = (f"configuration {result['config']}" if result["config"] else "every price file")
    calendars = ", ".join(cal) if isinstance(cal, list) else cal
    lines.append(f"price folder {result['directory']} ({scope}; calendar {calendars})")
    hidden = 0
    for entry in result["files"]:  # type: ignore[union-attr]
        name = entry.get("file") or "(no file)"
        head = f"{name} -> {entry['symbol']}"
        if entry.get("layout"):
            head += (f": layout {entry['layout']}, {entry.get('encoding') or 'parquet'}"
                     + (f", {_delimiter(entry.get('delimiter'))}-separated" if entry.get("delimiter") else "")
                     + f", header {entry.get('header')}, {entry.get('rows')} rows {entry.get('first')}.."
                       f"{entry.get('last')} ({str(entry.get('order')).replace('_', ' ')}), {_unit(entry)}, "
                       f"amount {'yes' if entry.get('amount_present') else 'no'}")
        lines.append(head)
        if entry.get("title"):
            adj = entry.get("vendor_adjustment")
            note = (f" -- the vendor's prices are {adj}-adjusted, not raw: export 不复权 for real-money lots"
                    if adj in ("forward", "backward") else "")
            lines.append(f"    title: {entry['title']}{note}")
        for skipped in entry.get("skipped_lines") or ():
            lines.append(f"    skipped line {skipped['line']}: {skipped['text']}")
        actions = entry.get("corporate_actions")
        if actions is not None:
            parts = [f"{k.replace('_', ' ')}: {v}" for k, v in actions.items()]
            adj = entry.get("adjustment")
            if adj:
                parts.append(f"adjustment {adj['method']} ({adj['splits']} split(s), {adj['dividends']} "
                             f"dividend(s) on the panel)")
            lines.append("    corporate actions: " + ("; ".join(parts) if parts else "none"))
        for finding in entry["findings"]:
            if finding["severity"] == "INFO" and not verbose:
                hidden += 1
                continue
            lines.append(f"    {finding['severity']:<5} {finding['check']}: {_finding_text(finding)}")
    for finding in result["findings"]:  # type: ignore[union-attr]
        if finding["severity"] == "INFO" and not verbose:
            hidden += 1
            continue
        where = f" ({finding['symbol']})" if finding.get("symbol") else ""
        lines.append(f"{finding['severity']:<5} {finding['check']}{where}: {_finding_text(finding)}")
    for pool in result["pools"]:  # type: ignore[union-attr]
        if pool.get("note"):
            lines.append(f"pool {pool['pool']} ({pool['calendar']}): {pool['note']}")
            continue
        span = pool.get("sessions") or [None, None]
        left = f"; left out (unreadable): {', '.join(pool['left_out'])}" if pool.get("left_out") else ""
        lines.append(f"pool {pool['pool']} ({pool['calendar']}, {len(pool['symbols'])} fund(s)): worst finding "
                     f"{pool.get('worst') or 'none'}" + (f", panel {span[0]}..{span[1]}" if span[0] else "") + left)
    for item in result["other_files"]:  # type: ignore[union-attr]
        lines.append(f"{item['file']}: {item['note']}")
    counts = result["counts"]
    summary = ", ".join(f"{counts[s]} {s}" for s in _SEVERITIES)  # type: ignore[index]
    verdict = "exit 4: fix the ERROR/FATAL findings above" if result["exit_code"] else "exit 0: no ERROR"
    more = f" ({hidden} INFO finding(s) not shown: --verbose)" if hidden else ""
    lines.append(f"{len(result['files'])} fund file(s): {summary}{more}; {verdict}")
    return "\n".join(lines)


def _finding_text(finding: Mapping[str, object]) -> str:
    text = str(finding["message"])
    extra = []
    if finding.get("dates"):
        extra.append(", ".join(map(str, finding["dates"])))  # type: ignore[arg-type]
    if finding.get("lines"):
        extra.append("data row(s) " + ", ".join(map(str, finding["lines"])))  # type: ignore[arg-type]
    return text + (f" (e.g. {'; '.join(extra)})" if extra else "")


if __name__ == "__main__":
    sys.exit(main())
