"""Small hand-made PPBE datasets, and a PDF text reader, for the render tests."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path

from ppbe_jobs.render import (
    AppropriationAmount,
    ExecutionLine,
    ProgramAmount,
    RdteProgramLine,
    ReportContext,
    ReportTable,
    budget_summary,
    execution_report,
    fydp_table,
    rdte_exhibit,
)

GENERATED_AT = datetime(2026, 3, 31, 14, 5, tzinfo=UTC)
CONTEXT = ReportContext(
    budget_cycle="FY2027 President's Budget",
    organization="Department of the Navy",
    generated_at=GENERATED_AT,
)

OMN = "Operation and Maintenance, Navy"
OMNR = "Operation and Maintenance, Navy Reserve"
RDTEN = "Research, Development, Test and Evaluation, Navy"
MPN = "Military Personnel, Navy"
OPN = "Other Procurement, Navy"


def _amounts(approp: str, color: str, by_year: dict[int, str]) -> list[AppropriationAmount]:
    return [
        AppropriationAmount(
            appropriation=approp, color_of_money=color, fiscal_year=fy, amount=D(amount)
        )
        for fy, amount in by_year.items()
    ]


def budget_amounts() -> list[AppropriationAmount]:
    """Four appropriations in three colors; RDT&E FY2026 arrives in two parts."""
    return [
        *_amounts(
            OMN,
            "O&M",
            {2026: "1234567.891", 2027: "1250000", 2028: "1275000.125", 2029: "1300000"}
            | {2030: "1325000.5"},
        ),
        *_amounts(OMNR, "O&M", {2026: "45000.25", 2027: "46000", 2028: "47000", 2029: "48000"}),
        *_amounts(OMNR, "O&M", {2030: "49000.75"}),
        *_amounts(
            RDTEN,
            "RDT&E",
            {2026: "25000.1", 2027: "26000", 2028: "27000", 2029: "28000", 2030: "29000"},
        ),
        *_amounts(RDTEN, "RDT&E", {2026: "5000.2"}),
        *_amounts(MPN, "MILPERS", {2026: "35000.001"}),
    ]


def rdte_lines() -> list[RdteProgramLine]:
    """Four program elements in budget activities 1, 2 and 4 (given out of order)."""

    def line(pe: str, title: str, ba: int, *amounts: str) -> RdteProgramLine:
        py, cy, by, *out = (D(a) for a in amounts)
        return RdteProgramLine(
            pe_number=pe,
            pe_title=title,
            budget_activity=ba,
            prior_year=py,
            current_year=cy,
            budget_year=by,
            out_years=tuple(out),
        )

    return [
        line("0603502N", "Surface and Shallow Water Mine Countermeasures", 4,
             "70000", "71000", "72000.75", "73000", "74000", "75000", "76000"),
        line("0602747N", "Undersea Warfare Applied Research", 2,
             "40000.25", "41000", "42000", "43000", "44000", "45000", "46000"),
        line("0601153N", "Defense Research Sciences", 1,
             "100000.5", "110000", "120000.25", "121000", "122000", "123000", "124000"),
        line("0602123N", "Force Protection Applied Research", 2,
             "50000", "55000.125", "60000", "61000", "62000", "63000", "64000"),
    ]  # fmt: skip


def execution_lines() -> list[ExecutionLine]:
    """One appropriation per status: watch, on track, below benchmark, no TOA."""

    def line(approp: str, color: str, *figures: str) -> ExecutionLine:
        toa, obl, exp, obl_bm, exp_bm = (D(f) for f in figures)
        return ExecutionLine(
            appropriation=approp,
            color_of_money=color,
            toa=toa,
            obligations=obl,
            expenditures=exp,
            obligation_benchmark=obl_bm,
            expenditure_benchmark=exp_bm,
        )

    return [
        line(OMN, "O&M", "1000000", "452500", "300000", "0.50", "0.35"),
        line(RDTEN, "RDT&E", "400000", "240000", "100000", "0.40", "0.20"),
        line(
            "Weapons Procurement, Navy", "Procurement", "300000", "60000", "15000", "0.40", "0.10"
        ),
        line("Military Construction, Navy", "MILCON", "0", "0", "0", "0.20", "0.05"),
    ]


def program_amounts() -> list[ProgramAmount]:
    """Three program elements in two appropriations; one with only two years funded."""

    def amounts(approp: str, pe: str, title: str, by_year: dict[int, str]) -> list[ProgramAmount]:
        return [
            ProgramAmount(
                pe_number=pe, pe_title=title, appropriation=approp, fiscal_year=fy, amount=D(a)
            )
            for fy, a in by_year.items()
        ]

    return [
        *amounts(RDTEN, "0601153N", "Defense Research Sciences",
                 {2026: "100.5", 2027: "110", 2028: "120", 2029: "130", 2030: "140.25"}),
        *amounts(RDTEN, "0603502N", "Mine Countermeasures",
                 {2026: "70", 2027: "71", 2028: "72", 2029: "73", 2030: "74"}),
        *amounts(OPN, "0204228N", "Surface Support", {2026: "10.001", 2030: "5"}),
    ]  # fmt: skip


def all_reports() -> dict[str, ReportTable]:
    """Each report type built from its dataset."""
    return {
        "budget_summary": budget_summary(budget_amounts(), CONTEXT),
        "rdte_exhibit": rdte_exhibit(rdte_lines(), CONTEXT, budget_year=2027, appropriation=RDTEN),
        "execution_report": execution_report(execution_lines(), CONTEXT, as_of=date(2026, 3, 31)),
        "fydp_table": fydp_table(program_amounts(), CONTEXT),
    }


@dataclass(frozen=True)
class PdfText:
    """The text of a PDF and its page count."""

    text: str
    pages: int


_PDF_STRING = re.compile(rb"\((?:\\.|[^\\)])*\)", re.S)
_PDF_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}


def _unescape(raw: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(raw):
        ch = raw[i : i + 1]
        if ch != b"\\":
            out += ch
            i += 1
            continue
        nxt = raw[i + 1 : i + 2]
        octal = re.match(rb"[0-7]{1,3}", raw[i + 1 : i + 4])
        if octal:
            out.append(int(octal.group(), 8))
            i += 1 + len(octal.group())
        else:
            out += _PDF_ESCAPES.get(nxt, nxt)
            i += 2
    return bytes(out)


def _minimal_pdf_text(data: bytes) -> PdfText:
    """Page count from the page objects; text from the string operands of BT/ET blocks."""
    pages = len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", data))
    blocks: list[str] = []
    for match in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        body = match.group(1)
        with contextlib.suppress(zlib.error):
            body = zlib.decompress(body)
        for block in re.findall(rb"\bBT\b(.*?)\bET\b", body, re.S):
            parts = [_unescape(s[1:-1]) for s in _PDF_STRING.findall(block)]
            blocks.append(b"".join(parts).decode("cp1252"))
    return PdfText(text="\n".join(blocks), pages=pages)


def read_pdf(path: Path) -> PdfText:
    """Text and page count: ``pdftotext`` when installed, else a minimal parse."""
    data = path.read_bytes()
    assert data.startswith(b"%PDF-"), "not a PDF"
    assert data.rstrip().endswith(b"%%EOF"), "PDF not finished"
    tool = shutil.which("pdftotext")
    if tool is None:
        return _minimal_pdf_text(data)
    out = subprocess.run(
        [tool, "-layout", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout
    # pdftotext ends every page with a form feed.
    return PdfText(text=out, pages=out.count("\f"))
