"""Statement numbers: one per department and month, the InvoiceId of its FOCUS rows.

A number is made from the month and the department id alone, so it is the same on every
export, every host and every run, and never changes once the month is closed. While the
month is open the statement is a draft that carries the number it will have.
"""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9]+")


def statement_number(period: str, department: str) -> str:
    """`ML-2026-10-RESEARCH` for department `research` in 2026-10."""
    if not department:  # usage and costs no department could take
        return f"ML-{period}-UNALLOCATED"
    dept = _UNSAFE.sub("-", department).strip("-").upper()
    if dept.lower() != department.lower():  # ids that only differ in punctuation stay apart
        dept += "-" + hashlib.sha256(department.encode()).hexdigest()[:6].upper()
    return f"ML-{period}-{dept}"


__all__ = ["statement_number"]
