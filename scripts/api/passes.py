"""Checks that scripts/api-check fuzzes every operation of the spec once.

    passes.py SPEC "NOT-FUZZED-IDS" "name=ID ID…" "name=GET" …

A pass is `name=` and operation IDs, or `name=GET` for every GET not listed elsewhere. Prints
"all N operations" when each operation of SPEC is in exactly one pass or in NOT-FUZZED-IDS,
else what is wrong. Reads the spec's layout (docs/openapi.yaml: methods at four spaces,
operationId at six) rather than parsing YAML, so that it needs nothing beyond python3.
"""

import re
import sys


def main() -> None:
    spec, not_fuzzed, passes = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
    operations: dict[str, str] = {}
    method = ""
    with open(spec, encoding="utf-8") as file:
        for line in file:
            match = re.match(r"^    (get|put|post|patch|delete|head|options):", line)
            if match:
                method = match.group(1).upper()
            match = re.match(r"^      operationId: (\w+)", line)
            if match:
                operations[match.group(1)] = method
    listed = list(not_fuzzed)
    explicit = {op for entry in passes for op in entry.partition("=")[2].split() if op != "GET"}
    for entry in passes:
        ids = entry.partition("=")[2].split()
        if ids == ["GET"]:
            ids = [op for op, m in operations.items() if m == "GET" and op not in explicit and op not in not_fuzzed]
        listed += ids
    problems = [f"{op} is in no pass" for op in operations if op not in listed]
    problems += [f"{op} is listed twice" for op in sorted(set(listed)) if listed.count(op) > 1]
    problems += [f"{op} is not in the spec" for op in sorted(set(listed)) if op not in operations]
    print("; ".join(problems) or f"all {len(operations)} operations")


if __name__ == "__main__":
    main()
