#!/usr/bin/env python3
"""Regenerates every capture listed in .ci/captures.toml and compares it with
the committed file: byte for byte where the output is deterministic, by
structure and declared tolerances where it is measured. Exits 1 when a
capture is stale.

    .ci/check-captures.py              check every capture
    .ci/check-captures.py FILE...      check only these captures
    .ci/check-captures.py --update     rewrite the captures that differ
"""

import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".ci" / "captures.toml"

UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
TIME_UNITS = {"ns", "µs", "us", "ms", "s"}
# A number, an optional sign and unit; or a run of sparkline blocks.
TOKEN_RE = re.compile(
    r"(?P<source>\.rs:\d+)"
    r"|(?P<spark>[▁▂▃▄▅▆▇█]+)"
    r"|(?P<sign>[+−-])?(?P<number>\d+(?:\.\d+)?)(?:\s?(?P<unit>B|KiB|MiB|GiB|ns|µs|us|ms|s)\b)?"
)


def tokens(line):
    """(skeleton, values): the line with numbers replaced by #, and the values."""
    values = []

    def replace(match):
        if match.group("source"):
            values.append(("source", match.group("source")))
            return "§"
        if match.group("spark"):
            return "~"
        value = float(match.group("number"))
        if match.group("sign") in ("-", "−"):
            value = -value
        unit = match.group("unit")
        if unit in TIME_UNITS:
            values.append(("time", value))
        elif unit:
            values.append(("bytes", value * UNITS[unit]))
        else:
            values.append(("count", value))
        return "#"

    skeleton = TOKEN_RE.sub(replace, line)
    return re.sub(r"\s+", " ", skeleton).strip(), values


def compare_structure(expected, actual, capture):
    skip = re.compile(capture["skip"]) if "skip" in capture else None
    keep = lambda text: [l for l in text.splitlines() if not (skip and skip.search(l))]
    expected_lines, actual_lines = keep(expected), keep(actual)
    if len(expected_lines) != len(actual_lines):
        return [f"{len(actual_lines)} lines now, {len(expected_lines)} captured"]
    relative = capture.get("relative", 0.0)
    absolute = capture.get("absolute_bytes", 0)
    counts = capture.get("counts", 0)
    problems = []
    for number, (old, new) in enumerate(zip(expected_lines, actual_lines), 1):
        old_skeleton, old_values = tokens(old)
        new_skeleton, new_values = tokens(new)
        if old_skeleton != new_skeleton or len(old_values) != len(new_values):
            problems.append(f"line {number} changed:\n    captured: {old}\n    now:      {new}")
            continue
        for (kind, was), (_, now) in zip(old_values, new_values):
            if kind == "time":
                continue
            if kind == "source":
                ok = was == now
            elif kind == "bytes":
                ok = abs(now - was) <= max(relative * abs(was), absolute)
            else:
                ok = abs(now - was) <= counts
            if not ok:
                problems.append(
                    f"line {number}: {was!r} captured, {now!r} now (beyond the declared tolerance)"
                    f"\n    captured: {old}\n    now:      {new}"
                )
                break
    return problems


def run(capture):
    """What the command prints; or, when its command names `{out}`, what it
    writes to that path (a chart, for example)."""
    with tempfile.TemporaryDirectory() as scratch:
        out = pathlib.Path(scratch) / pathlib.Path(capture["file"]).name
        command = [part.replace("{out}", str(out)) for part in shlex.split(capture["command"])]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"`{capture['command']}` failed ({result.returncode}):\n{result.stderr}"
            )
        if "{out}" in capture["command"]:
            return out.read_text(encoding="utf-8")
        return result.stdout


def main(argv):
    update = "--update" in argv
    only = {arg for arg in argv[1:] if not arg.startswith("--")}
    with CONFIG.open("rb") as file:
        captures = tomllib.load(file)["capture"]
    failures = 0
    for capture in captures:
        path = ROOT / capture["file"]
        if only and capture["file"] not in only:
            continue
        needs = capture.get("needs")
        if needs and shutil.which(needs) is None:
            print(f"skipped {capture['file']}: needs {needs}")
            continue
        expected = path.read_text(encoding="utf-8")
        try:
            actual = run(capture)
        except RuntimeError as error:
            print(f"FAILED {capture['file']}: {error}")
            failures += 1
            continue
        if capture["mode"] == "exact":
            problems = [] if actual == expected else ["differs byte for byte"]
        else:
            problems = compare_structure(expected, actual, capture)
        if not problems:
            print(f"ok     {capture['file']} ({capture['mode']})")
            continue
        if update:
            path.write_text(actual, encoding="utf-8")
            print(f"update {capture['file']}")
            continue
        failures += 1
        print(f"STALE  {capture['file']} ({capture['mode']}): regenerate it with")
        print(f"       {capture['command']} > {capture['file']}")
        for problem in problems[:5]:
            print(f"       {problem}")
        if capture["mode"] == "exact":
            diff = subprocess.run(
                ["diff", "-u", str(path), "-"], input=actual, capture_output=True, text=True
            ).stdout
            print("\n".join("       " + l for l in diff.splitlines()[:30]))
    print(f"captures: {failures} stale")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
