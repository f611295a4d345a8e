"""Each report in each format, checked against figures computed by hand.

The expected rows below are the CSV text of each report; every subtotal and
total in them was added up by hand from the datasets in ``data.py``. The XLSX
cells must hold the same values exactly, as numbers, with the right formats.
"""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest

from ppbe_jobs.render import (
    Column,
    ColumnKind,
    ReportFormat,
    ReportTable,
    RowGroup,
    write_csv,
    write_pdf,
    write_report,
    write_xlsx,
)

from .data import GENERATED_AT, OMN, OMNR, OPN, RDTEN, all_reports, read_pdf

MPN = "Military Personnel, Navy"
FYS = ["FY2026", "FY2027", "FY2028", "FY2029", "FY2030"]

EXPECTED: dict[str, list[list[str]]] = {
    "budget_summary": [
        ["Color of Money", "Appropriation", *FYS, "FYDP Total"],
        ["MILPERS", MPN, "35000.001", "0", "0", "0", "0", "35000.001"],
        ["Total MILPERS", "", "35000.001", "0", "0", "0", "0", "35000.001"],
        ["O&M", OMN, "1234567.891", "1250000", "1275000.125", "1300000", "1325000.5",
         "6384568.516"],
        ["O&M", OMNR, "45000.25", "46000", "47000", "48000", "49000.75", "235001.00"],
        ["Total O&M", "", "1279568.141", "1296000", "1322000.125", "1348000", "1374001.25",
         "6619569.516"],
        ["RDT&E", RDTEN, "30000.3", "26000", "27000", "28000", "29000", "140000.3"],
        ["Total RDT&E", "", "30000.3", "26000", "27000", "28000", "29000", "140000.3"],
        ["Grand Total", "", "1344568.442", "1322000", "1349000.125", "1376000", "1403001.25",
         "6794569.817"],
    ],
    "rdte_exhibit": [
        ["Program Element", "Program Element Title", "BA", "FY2025 (PY)", "FY2026 (CY)",
         "FY2027 (BY)", "FY2028", "FY2029", "FY2030", "FY2031"],
        ["0601153N", "Defense Research Sciences", "01",
         "100000.5", "110000", "120000.25", "121000", "122000", "123000", "124000"],
        ["", "Total BA 01, Basic Research", "",
         "100000.5", "110000", "120000.25", "121000", "122000", "123000", "124000"],
        ["0602123N", "Force Protection Applied Research", "02",
         "50000", "55000.125", "60000", "61000", "62000", "63000", "64000"],
        ["0602747N", "Undersea Warfare Applied Research", "02",
         "40000.25", "41000", "42000", "43000", "44000", "45000", "46000"],
        ["", "Total BA 02, Applied Research", "",
         "90000.25", "96000.125", "102000", "104000", "106000", "108000", "110000"],
        ["0603502N", "Surface and Shallow Water Mine Countermeasures", "04",
         "70000", "71000", "72000.75", "73000", "74000", "75000", "76000"],
        ["", "Total BA 04, Advanced Component Development and Prototypes", "",
         "70000", "71000", "72000.75", "73000", "74000", "75000", "76000"],
        ["", f"Total {RDTEN}", "",
         "260000.75", "277000.125", "294001.00", "298000", "302000", "306000", "310000"],
    ],
    "execution_report": [
        ["Appropriation", "Color of Money", "TOA", "Obligations", "Obligation Rate",
         "OSD Obligation Benchmark", "Expenditures", "Expenditure Rate",
         "OSD Expenditure Benchmark", "Status"],
        [OMN, "O&M", "1000000", "452500", "0.4525", "0.50", "300000", "0.3000", "0.35", "Watch"],
        [RDTEN, "RDT&E", "400000", "240000", "0.6000", "0.40", "100000", "0.2500", "0.20",
         "On track"],
        ["Weapons Procurement, Navy", "Procurement", "300000", "60000", "0.2000", "0.40",
         "15000", "0.0500", "0.10", "Below benchmark"],
        ["Military Construction, Navy", "MILCON", "0", "0", "", "0.20", "0", "", "0.05",
         "No TOA"],
        ["Total", "", "1700000", "752500", "0.4426", "", "415000", "0.2441", "", ""],
    ],
    "fydp_table": [
        ["Appropriation", "Program Element", "Program Element Title", *FYS, "FYDP Total"],
        [OPN, "0204228N", "Surface Support", "10.001", "0", "0", "0", "5", "15.001"],
        [f"Total {OPN}", "", "", "10.001", "0", "0", "0", "5", "15.001"],
        [RDTEN, "0601153N", "Defense Research Sciences",
         "100.5", "110", "120", "130", "140.25", "600.75"],
        [RDTEN, "0603502N", "Mine Countermeasures", "70", "71", "72", "73", "74", "360"],
        [f"Total {RDTEN}", "", "", "170.5", "181", "192", "203", "214.25", "960.75"],
        ["Grand Total", "", "", "180.501", "181", "192", "203", "219.25", "975.751"],
    ],
}  # fmt: skip

# A figure of each report as the PDF must print it: separators, three places, half-up.
PDF_FIGURES = {
    "budget_summary": ["1,234,567.891", "6,794,569.817", "235,001.000"],
    "rdte_exhibit": ["120,000.250", "294,001.000", "Total BA 02, Applied Research"],
    "execution_report": ["1,000,000.000", "45.3%", "44.3%", "Below benchmark"],
    "fydp_table": ["975.751", "10.001", "Grand Total"],
}

REPORTS = list(EXPECTED)


def _kinds(table: ReportTable) -> list[ColumnKind]:
    return [c.kind for c in table.columns]


# -- CSV -------------------------------------------------------------------------


@pytest.mark.parametrize("name", REPORTS)
def test_csv_has_exact_decimal_strings(tmp_path: Path, name: str) -> None:
    table = all_reports()[name]
    rendered = write_csv(table, tmp_path / f"{name}.csv")

    raw = rendered.path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")  # UTF-8 without a byte-order mark
    with open(rendered.path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows == EXPECTED[name]
    assert raw.endswith(b"\r\n")
    assert rendered.format is ReportFormat.CSV
    assert rendered.bytes == len(raw)


def test_csv_writes_decimals_in_plain_notation_and_defuses_formulas(tmp_path: Path) -> None:
    table = ReportTable(
        title="t",
        columns=(
            Column(key="label", header="Label"),
            Column(key="v", header="V", kind=ColumnKind.MONEY),
        ),
        groups=(
            RowGroup(
                rows=(
                    {"label": '=HYPERLINK("http://x")', "v": Decimal("1E+3")},
                    {"label": "-negative", "v": Decimal("-0.000001")},
                    {"label": "Café \u2013 naïve", "v": None},
                )
            ),
        ),
        generated_at=GENERATED_AT,
    )
    path = write_csv(table, tmp_path / "t.csv").path
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[1:] == [
        ['\'=HYPERLINK("http://x")', "1000"],
        ["'-negative", "-0.000001"],
        ["Café \u2013 naïve", ""],
    ]


# -- XLSX ------------------------------------------------------------------------


def _header_row(sheet: object, first_header: str) -> int:
    for (cell,) in sheet.iter_rows(min_col=1, max_col=1):  # type: ignore[attr-defined]
        if cell.value == first_header:
            return int(cell.row)
    raise AssertionError(f"no header row starting {first_header!r}")


@pytest.mark.parametrize("name", REPORTS)
def test_xlsx_values_formats_and_totals_are_exact(tmp_path: Path, name: str) -> None:
    table = all_reports()[name]
    rendered = write_xlsx(table, tmp_path / f"{name}.xlsx")
    assert rendered.format is ReportFormat.XLSX

    book = openpyxl.load_workbook(rendered.path)  # formulas would come back as "=..." text
    sheet = book.active
    expected = EXPECTED[name]
    header = _header_row(sheet, expected[0][0])
    assert sheet.cell(1, 1).value == "UNCLASSIFIED"
    assert sheet.cell(2, 1).value == table.title
    assert sheet.cell(3, 1).value == table.subtitle
    assert sheet.freeze_panes == f"A{header + 1}"
    assert sheet.print_title_rows == f"${header}:${header}"  # headers on every printed page
    assert sheet.oddHeader.center.text == "UNCLASSIFIED"
    assert sheet.oddFooter.center.text == "UNCLASSIFIED"
    assert sheet.oddFooter.right.text == "Page &P of &N"
    assert [c.value for c in sheet[header]][: len(expected[0])] == expected[0]

    kinds = _kinds(table)
    formats = {ColumnKind.MONEY: "#,##0.000", ColumnKind.PERCENT: "0.0%"}
    for offset, want_row in enumerate(expected[1:], start=1):
        cells = sheet[header + offset]
        is_total = any(v.startswith(("Total", "Grand Total")) for v in want_row if v)
        for cell, want, kind in zip(cells, want_row, kinds, strict=False):
            if kind is ColumnKind.TEXT:
                assert (cell.value or "") == want, (cell.coordinate, cell.value, want)
                continue
            if want == "":
                assert cell.value is None, cell.coordinate
                continue
            assert isinstance(cell.value, int | float), (cell.coordinate, cell.value)
            assert Decimal(str(cell.value)) == Decimal(want), (cell.coordinate, cell.value)
            assert cell.number_format == formats[kind], cell.coordinate
            assert bool(cell.font.b) == is_total, cell.coordinate
    assert sheet.max_row > header + len(expected) - 1  # footnotes and the closing banner
    banners = [
        r[0].value for r in sheet.iter_rows(min_row=header + len(expected), min_col=1, max_col=1)
    ]
    assert banners[-1] == "UNCLASSIFIED"
    for note in table.footnotes:
        assert note in banners


def test_xlsx_text_that_looks_like_a_formula_stays_text(tmp_path: Path) -> None:
    table = ReportTable(
        title="t",
        columns=(
            Column(key="label", header="Label"),
            Column(key="n", header="N", kind=ColumnKind.INT),
        ),
        groups=(RowGroup(rows=({"label": "=1+1", "n": 1234567},)),),
        generated_at=GENERATED_AT,
    )
    book = openpyxl.load_workbook(write_xlsx(table, tmp_path / "t.xlsx").path)
    sheet = book.active
    row = _header_row(sheet, "Label") + 1
    assert sheet.cell(row, 1).data_type == "s"
    assert sheet.cell(row, 1).value == "=1+1"
    assert sheet.cell(row, 2).value == 1234567
    assert sheet.cell(row, 2).number_format == "#,##0"


# -- PDF -------------------------------------------------------------------------


@pytest.mark.parametrize("name", REPORTS)
def test_pdf_has_banner_title_figures_and_page_numbers(tmp_path: Path, name: str) -> None:
    table = all_reports()[name]
    rendered = write_pdf(table, tmp_path / f"{name}.pdf")
    assert rendered.format is ReportFormat.PDF

    pdf = read_pdf(rendered.path)
    assert pdf.pages == 1
    assert pdf.text.count("UNCLASSIFIED") >= 2  # top and bottom
    assert table.title in pdf.text
    assert "Page 1 of 1" in pdf.text
    assert "Generated 2026-03-31 14:05 UTC" in pdf.text
    for figure in PDF_FIGURES[name]:
        assert figure in pdf.text, figure


def test_pdf_repeats_banner_and_column_headers_on_every_page(tmp_path: Path) -> None:
    from ppbe_jobs.render import RdteProgramLine, rdte_exhibit

    from .data import CONTEXT

    lines = [
        RdteProgramLine(
            pe_number=f"06{i:05d}N",
            pe_title=f"Program {i} " + "with a long title that has to wrap in its column " * 2,
            budget_activity=1 + i % 7,
            prior_year=Decimal(i * 1000),
            current_year=Decimal(i * 1100),
            budget_year=Decimal(i * 1210) + Decimal("0.5"),
            out_years=(Decimal(1), Decimal(2)),
        )
        for i in range(1, 61)
    ]
    table = rdte_exhibit(lines, CONTEXT, budget_year=2027)
    pdf = read_pdf(write_pdf(table, tmp_path / "long.pdf").path)

    assert pdf.pages >= 2
    assert pdf.text.count("UNCLASSIFIED") >= 2 * pdf.pages
    assert pdf.text.count("Program Element Title") == pdf.pages
    for page in range(1, pdf.pages + 1):
        assert f"Page {page} of {pdf.pages}" in pdf.text
    assert "Total Research, Development, Test and Evaluation" in pdf.text


def test_pdf_prints_text_outside_latin_1(tmp_path: Path) -> None:
    table = ReportTable(
        title="Budget \u201cquotes\u201d \u2013 and \u2713 marks",
        columns=(Column(key="t", header="Text"),),
        groups=(RowGroup(rows=({"t": "€ 5 \u2014 ok"},)),),
        classification="CUI",
        generated_at=GENERATED_AT,
    )
    pdf = read_pdf(write_pdf(table, tmp_path / "u.pdf").path)
    assert "Budget \u201cquotes\u201d \u2013 and ? marks" in pdf.text
    assert "€ 5 \u2014 ok" in pdf.text
    assert pdf.text.count("CUI") >= 2


# -- dispatch --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["pdf", "XLSX", ReportFormat.CSV])
def test_write_report_picks_the_writer(tmp_path: Path, fmt: str) -> None:
    table = all_reports()["fydp_table"]
    rendered = write_report(table, tmp_path / "r", fmt)
    assert rendered.format == str(fmt).lower()
    assert rendered.path.exists()


def test_write_report_refuses_an_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown report format 'docx'"):
        write_report(all_reports()["fydp_table"], tmp_path / "r", "docx")
