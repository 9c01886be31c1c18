#!/usr/bin/env python3
"""Purchase-order lookup: a Baton agent in Python, run by the `exec` agent.

Baton starts this script once per task (python3, standard library only):

  stdin   one JSON object {run_id, step, attempt, input, record, steps, writes};
          this step reads steps.extract.{po_number, supplier, total}.
  stdout  one JSON object, the step's output:
          {found, matched_by, po_number, supplier, supplier_matches, amount,
           vat_rate, status, iban, reason}   ({found: false, reason} when no
          purchase order fits).
  exit 0  the output above (a missing PO is an answer, not an error: the
          workflow's route decides what happens to the invoice).
  exit 75 a transient problem (EX_TEMPFAIL): the order file is missing or the
          ERP export is rewriting it (a `<file>.lock` next to it). The step's
          retry policy runs the script again later.
  exit 1  a problem a person must fix: the order's row cannot be read (e.g. a
          draft order without an amount). The reason goes to stderr; Baton puts
          its tail in the step's error and the run in the exception queue.
  exit 2  the task itself is malformed (not JSON, no steps.extract).

The orders come from a CSV export of the purchasing system, named by the
environment variable PO_CSV (the workflow sets it to the file shipped next to
it: ${BATON_WORKFLOWS_DIR}/purchase_orders.csv). Columns: po_number, supplier,
amount, vat_rate, status (open | closed), iban (the supplier's account on file).

An invoice that quotes a PO number is matched by that number. One without a PO
reference is matched to the supplier's only open order of the same total
(+/- 0.01); none or several: not found.
"""

import csv
import json
import os
import sys

EX_TEMPFAIL = 75


def fail(code, message):
    print("po_lookup: " + message, file=sys.stderr)
    sys.exit(code)


def number(row, column, line):
    text = (row.get(column) or "").strip()
    try:
        return float(text)
    except ValueError:
        fail(1, "%s line %d (%s): %s '%s' is not a number; fix the order in the purchasing system"
             % (os.path.basename(PO_CSV), line, row.get("po_number", "?"), column, text))


def load_orders():
    """The CSV's rows with their line numbers; exits 75 while it is unavailable."""
    if os.path.exists(PO_CSV + ".lock"):
        fail(EX_TEMPFAIL, "%s is being exported (%s.lock exists); try again later" % (PO_CSV, PO_CSV))
    try:
        with open(PO_CSV, newline="", encoding="utf-8") as f:
            return [(i + 2, row) for i, row in enumerate(csv.DictReader(f))]
    except OSError as e:
        fail(EX_TEMPFAIL, "cannot read %s: %s" % (PO_CSV, e.strerror))


def same_name(a, b):
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def answer(line, row, matched_by, supplier):
    return {
        "found": True,
        "matched_by": matched_by,
        "po_number": row["po_number"],
        "supplier": row["supplier"],
        "supplier_matches": same_name(row["supplier"], supplier),
        "amount": number(row, "amount", line),
        "vat_rate": number(row, "vat_rate", line),
        "status": row["status"].strip(),
        "iban": row["iban"].strip(),
        "reason": "",
    }


def lookup(invoice):
    po_number = invoice.get("po_number") or ""
    supplier = invoice.get("supplier") or ""
    orders = load_orders()
    if po_number:
        for line, row in orders:
            if row["po_number"].strip() == po_number:
                out = answer(line, row, "po_number", supplier)
                if not out["supplier_matches"]:
                    out["reason"] = "%s is %s's order, the invoice is from %s" % (po_number, row["supplier"], supplier)
                elif out["status"] != "open":
                    out["reason"] = "%s is %s" % (po_number, out["status"])
                return out
        return {"found": False, "reason": "no purchase order %s" % po_number}
    total = invoice.get("total")
    if not isinstance(total, (int, float)):
        return {"found": False, "reason": "no PO reference and no total on the invoice"}
    candidates = [(line, row) for line, row in orders
                  if same_name(row["supplier"], supplier) and row["status"].strip() == "open"
                  and abs(number(row, "amount", line) - total) <= 0.01]
    if len(candidates) == 1:
        line, row = candidates[0]
        return answer(line, row, "supplier_and_amount", supplier)
    return {"found": False,
            "reason": "no PO reference, and %d open orders of %s for %.2f" % (len(candidates), supplier, total)}


def main():
    try:
        task = json.load(sys.stdin)
    except ValueError as e:
        fail(2, "the task on stdin is not JSON: %s" % e)
    invoice = (task.get("steps") or {}).get("extract") if isinstance(task, dict) else None
    if not isinstance(invoice, dict):
        fail(2, "the task has no steps.extract (run this step after `extract`)")
    json.dump(lookup(invoice), sys.stdout)
    sys.stdout.write("\n")


PO_CSV = os.environ.get("PO_CSV") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                  "purchase_orders.csv")

if __name__ == "__main__":
    main()
