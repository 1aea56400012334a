#!/usr/bin/env python3
"""Writes a broken copy of a template from a fault file (tests/deploy/broken-*.fault).

A fault file holds comment lines:
  # Broken on purpose (...): what is wrong          (documentation)
  # expect: TEXT                                   (read by scripts/test-deploy.sh)
  # replace: LINE   (one or more, consecutive lines of the template, indentation included)
  # with: LINE      (zero or more: what they become; none deletes them)

The lines to replace must appear exactly once in the template, so a fault that no longer
matches the template (it was edited) fails loudly instead of testing nothing.

  scripts/break-template.py TEMPLATE FAULT OUT
"""
import sys


def main(template_path, fault_path, out_path):
    template = open(template_path, encoding="utf-8").read().split("\n")
    fault = open(fault_path, encoding="utf-8").read().split("\n")
    old = [line[len("# replace: "):] for line in fault if line.startswith("# replace: ")]
    new = [line[len("# with: "):] for line in fault if line.startswith("# with: ")]
    if not old:
        sys.exit(f"{fault_path}: no '# replace:' line")
    found = [i for i in range(len(template)) if template[i:i + len(old)] == old]
    if len(found) != 1:
        sys.exit(f"{fault_path}: the lines to replace appear {len(found)} times in {template_path}, not once")
    at = found[0]
    broken = template[:at] + new + template[at + len(old):]
    # The expectations travel with the copy, for a person reading it.
    header = [line for line in fault if line.startswith("# Broken") or line.startswith("# expect: ")]
    with open(out_path, "w", encoding="utf-8") as out:
        out.write("\n".join(header + broken))


if __name__ == "__main__":
    main(*sys.argv[1:])
