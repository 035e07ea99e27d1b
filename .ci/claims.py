#!/usr/bin/env python3
"""The claims index: every number a page states is backed by a test or a file.

A page is checked when `claims/<page>.toml` exists (`claims/ch1-tasks.toml` for
`book/ch1-tasks.md`). Each entry names a piece of a sentence on the page and
what proves it:

    [[claim]]
    text = "100 tasks stay alive"      # words from the page, as written
    proof = "ch1-tasks::bad_workers_leave_exactly_100_tasks_alive_for_an_hour"

A proof is one of:
  - `crate::test_name`: a test (or bench) function in that crate's tests/,
    benches/ or src/ (chapters/<crate> or crates/<crate>);
  - `path/to/file.rs::function`: a function in that file (a test binary
    without the harness, whose checks run in `main`);
  - a path to a file of the repository, usually a captured output
    (`chapters/ch1-tasks/output/run.txt`) or the source that defines a
    constant: every number in `text` must appear in that file;
  - `cite: <where>`: a fact about software outside this project (a Go
    version, a linter's rule number), with the reference that states it.

A claims file may also name sections of its page that are not indexed yet,
by their heading, while someone else is rewriting them:

    not_yet_indexed = ["What a sample costs"]

Commands:
  check               (default) fail when a checked page states a number that
                      no claim covers, or a claim's text or proof is stale
  index OUT.md        write the appendix page listing every claim (CI checks
                      that book/claims.md is up to date)
  draft PAGE.md       print a draft claims file for a page, proofs guessed
                      from the captures it includes and its chapter's tests
"""

import pathlib
import re
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
CLAIMS = ROOT / "claims"

# Numbers that are names, not claims: chapter and section references,
# versions, rule and error codes, architectures.
IGNORED = [
    r"(?i:\bchapters? \d+(?:(?:, | and | or |–)\d+)*)",
    r"\bch\d+\b",
    r"§\s?\d+",
    r"\bsection \d+(?:\.\d+)*",
    r"\b2\.6\.3\b",
    r"(?i:\bseeds? 00\d\b)",
    r"(?i:\bpractices? \d+\b)",
    r"(?i:\bphases? \d+\b)",
    r"\b00[02]_\w+",
    r"\b(?:Go|Rust|go|glibc|Debian|mdBook|mdbook|tokio|hyper|jemalloc|LLVM) v?\d+(?:\.\d+)*\b",
    r"\bgo1\.\d+(?:\.\d+)?",
    r"\bx86(?:-64)?\b",
    r"\bAArch64\b",
    r"\b(?:E|SA|G|S)\d{3,4}\b",
    r"\b[\w.-]+/[\w.-]+#\d+\b",
    r"\bHTTP/\d(?:\.\d)?\b",
    r"\b127\.0\.0\.1\b",
    r"\bIPv[46]\b",
    r"\bUTF-8\b",
    r"\bt-end\b",
    r"\[\d+\.\s",  # a link to a chapter by its numbered title: "[3. The seed's TTL cache]"
    r"\b\d+(?:st|nd|rd|th)\b",  # ordinals: the 10th turn is a rule, not a measurement
]
IGNORED_RE = re.compile("|".join(f"(?:{pattern})" for pattern in IGNORED))
NUMBER_RE = re.compile(r"\d+(?:[ ,_\u202f\u2009]\d{3})*(?:\.\d+)?")


def normalize_number(token):
    return re.sub(r"[ ,_\u202f\u2009]", "", token)


def numbers_in(text):
    text = IGNORED_RE.sub(" ", text)
    return [normalize_number(match.group()) for match in NUMBER_RE.finditer(text)]


def squash(text):
    return re.sub(r"\s+", " ", text).strip()


def prose_units(markdown):
    """The page as a reader reads it: sentences and table rows, without code,
    includes, HTML comments, inline code, link targets or heading numbers."""
    text = re.sub(r"<!--.*?-->", " ", markdown, flags=re.S)
    lines, in_fence = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence or "{{#" in line:
            continue
        if line.startswith("#"):
            line = re.sub(r"^#+\s*(?:\d+\.\s*)?", "", line) + "."
        line = re.sub(r"^\s*(?:>\s*)*", "", line)
        line = re.sub(r"^\s*\d+\.\s", "", line)  # numbered list items
        lines.append(line)
    units = []
    paragraph = []

    def flush():
        if paragraph:
            joined = squash(" ".join(paragraph))
            units.extend(
                part for part in re.split(r"(?<=[.!?:;])\s+(?=[A-Z(`*\[\"“|-])", joined) if part
            )
            paragraph.clear()

    for line in lines:
        if line.strip().startswith("|"):
            flush()
            if not re.fullmatch(r"\s*\|[\s:|-]*\|\s*", line):
                units.append(squash(line))
        elif not line.strip() or re.match(r"\s*(?:[-*+]\s|<)", line):
            flush()
            if line.strip():
                paragraph.append(re.sub(r"^\s*[-*+]\s", "", line))
        else:
            paragraph.append(line)
    flush()
    cleaned = []
    for unit in units:
        unit = re.sub(r"`[^`]*`", "`…`", unit)
        unit = re.sub(r"\]\([^)]*\)", "]", unit)
        unit = re.sub(r"<[^>]+>", " ", unit)
        cleaned.append(squash(unit))
    return cleaned


def load_data(page):
    path = CLAIMS / f"{page.stem}.toml"
    if not path.exists():
        return None
    with path.open("rb") as file:
        return tomllib.load(file)


def load_claims(page):
    data = load_data(page)
    return None if data is None else data.get("claim", [])


def without_sections(markdown, headings):
    """The page without the sections under `headings` (heading text, without
    the #s), each up to the next heading of the same or a higher level."""
    kept, skipping_level, in_fence = [], None, False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        match = None if in_fence else re.match(r"^(#+)\s+(.*?)\s*$", line)
        if match:
            level = len(match.group(1))
            if skipping_level is not None and level <= skipping_level:
                skipping_level = None
            if skipping_level is None and match.group(2) in headings:
                skipping_level = level
        if skipping_level is None:
            kept.append(line)
    return "\n".join(kept)


def crate_dir(crate):
    for base in ("chapters", "crates"):
        candidate = ROOT / base / crate
        if (candidate / "Cargo.toml").exists():
            return candidate
    return None


def proof_problem(claim):
    """Why a claim's proof does not hold, or None."""
    proof = claim.get("proof", "").strip()
    if not proof or proof == "?":
        return "no proof given"
    if proof.startswith("cite:"):
        return None if len(proof) > len("cite: ") + 3 else "a citation says where"
    if "::" in proof and "/" in proof.split("::", 1)[0]:
        path, name = proof.split("::", 1)
        source = ROOT / path
        if not source.is_file():
            return f"no file {path}"
        if re.search(rf"\bfn {re.escape(name)}\s*[(<]", source.read_text(encoding="utf-8")):
            return None
        return f"no function {name} in {path}"
    if "::" in proof:
        crate, name = proof.split("::", 1)
        directory = crate_dir(crate)
        if directory is None:
            return f"no crate {crate}"
        pattern = re.compile(rf"\bfn {re.escape(name)}\s*[(<]")
        for source in directory.rglob("*.rs"):
            if "target" in source.parts:
                continue
            if pattern.search(source.read_text(encoding="utf-8")):
                return None
        return f"no function {name} in {crate}"
    path = ROOT / proof
    if not path.is_file():
        return f"no file {proof}"
    content = path.read_text(encoding="utf-8", errors="replace")
    content_numbers = set(numbers_in(content)) | set(
        normalize_number(token) for token in re.findall(r"\d[\d_]*(?:\.\d+)?", content)
    )
    missing = [number for number in numbers_in(claim["text"]) if number not in content_numbers]
    if missing:
        return f"{proof} does not contain {', '.join(missing)}"
    return None


def clean(text):
    """A claim's text as `prose_units` shows the page: inline code as `…`."""
    text = re.sub(r"`[^`]*`", "`…`", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return squash(text)


def check_page(page, claims):
    markdown = page.read_text(encoding="utf-8")
    skipped = (load_data(page) or {}).get("not_yet_indexed", [])
    for heading in skipped:
        if not re.search(rf"^#+\s+{re.escape(heading)}\s*$", markdown, flags=re.M):
            print(f"{page.name}: not_yet_indexed names no heading: {heading!r}", file=sys.stderr)
    units = prose_units(without_sections(markdown, skipped))
    problems = []
    claim_units = []
    for claim in claims:
        text = clean(claim.get("text", ""))
        claim_units.append(text)
        if not text:
            problems.append(f"{page.name}: a claim without text")
            continue
        if not any(text in unit for unit in units):
            problems.append(f"{page.name}: claim text not on the page: {text!r}")
        problem = proof_problem(claim)
        if problem:
            problems.append(f"{page.name}: {text!r}: {problem}")
    for unit in units:
        wanted = numbers_in(unit)
        if not wanted:
            continue
        covered = []
        for claim_text in claim_units:
            if claim_text and claim_text in unit:
                covered.extend(numbers_in(claim_text))
        uncovered = [number for number in wanted if number not in covered]
        if uncovered:
            problems.append(
                f"{page.name}: no claim covers {', '.join(uncovered)} in: {unit}"
            )
    return problems


def checked_pages():
    pages = []
    for page in sorted(BOOK.glob("*.md")):
        if page.name in ("SUMMARY.md", "claims.md"):
            continue
        pages.append((page, load_claims(page)))
    return pages


def check():
    problems, unchecked, count = [], [], 0
    for page, claims in checked_pages():
        if claims is None:
            unchecked.append(page.name)
            continue
        count += len(claims)
        problems.extend(check_page(page, claims))
    if not INDEX.exists() or INDEX.read_text(encoding="utf-8") != index_text():
        problems.append(
            "book/claims.md is not the index of the claims files: "
            "run `python3 .ci/claims.py index book/claims.md`"
        )
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"claims: {count} claims checked; {len(problems)} problem(s)")
    if unchecked:
        print("claims: pages without a claims file (not checked yet): " + ", ".join(unchecked))
    return 1 if problems else 0


def title_of(page):
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return page.stem


def describe(proof):
    """The proof as the index shows it; long names may break after `::` or `/`."""
    if proof.startswith("cite:"):
        return "cited: " + proof[len("cite:"):].strip()
    breakable = proof.replace("<", "&lt;").replace("::", "::<wbr>").replace("/", "/<wbr>")
    if "::" in proof and "/" not in proof.split("::", 1)[0]:
        return f"test <code>{breakable}</code>"
    return f"<code>{breakable}</code>"


INDEX = BOOK / "claims.md"


def index_text():
    lines = [
        "# Appendix: every claim and its proof",
        "",
        "Each number a page states, with what proves it: a test that asserts it, a captured",
        "output (regenerated and compared in CI) or a source file that holds it, or, for facts",
        "about other software, where that software says so. CI fails when a page in this index",
        "states a number the index does not cover.",
        "",
    ]
    unchecked = []
    for page, claims in checked_pages():
        if claims is None:
            unchecked.append(page)
            continue
        lines += [f"## [{title_of(page)}]({page.name})", ""]
        pending = (load_data(page) or {}).get("not_yet_indexed", [])
        if pending:
            names = ", ".join(f"\"{heading}\"" for heading in pending)
            lines += [f"Not indexed yet: the section{'s' if len(pending) > 1 else ''} {names}.", ""]
        if not claims:
            lines += ["This page states no numbers: its rules link to the sections that prove them.", ""]
            continue
        for claim in claims:
            lines.append(f"- {squash(claim['text'])}<br>→ {describe(claim['proof'])}")
        lines.append("")
    if unchecked:
        lines += [
            "## Pages not indexed yet",
            "",
            "These pages have not joined the index yet (CONTRIBUTING.md says how a page joins):",
            "",
        ]
        lines += [f"- [{title_of(page)}]({page.name})" for page in unchecked]
        lines.append("")
    return "\n".join(lines)


def index(out):
    pathlib.Path(out).write_text(index_text(), encoding="utf-8")
    print(f"wrote {out}")
    return 0


def tests_of(directory):
    """(crate::name, body) for every function under a #[test]-like attribute."""
    found = []
    for source in list(directory.glob("tests/*.rs")) + list(directory.glob("src/*.rs")):
        text = source.read_text(encoding="utf-8")
        for match in re.finditer(r"#\[(?:tokio::)?test[^\]]*\]\s*(?:async\s+)?fn (\w+)", text):
            end = text.find("\n}\n", match.end())
            found.append((f"{directory.name}::{match.group(1)}", match.group(1) + text[match.end():end]))
    return found


def draft(page_path):
    page = pathlib.Path(page_path)
    markdown = page.read_text(encoding="utf-8")
    captures = [
        (ROOT / "book" / include).resolve()
        for include in re.findall(r"\{\{#include ([^}:]+)\}\}", markdown)
    ]
    captures = [c for c in captures if c.is_file()]
    crates = sorted(set(re.findall(r"chapters/([\w-]+)/", markdown)))
    candidates = []
    for crate in crates:
        directory = crate_dir(crate)
        if directory:
            candidates.extend(tests_of(directory))
    existing = load_claims(page) or []
    for unit in prose_units(markdown):
        wanted = set(numbers_in(unit))
        if not wanted:
            continue
        if any(clean(c["text"]) in unit for c in existing):
            continue
        proof = "?"
        for name, body in candidates:
            have = {normalize_number(t) for t in re.findall(r"\d[\d_]*(?:\.\d+)?", name.replace("_", " "))}
            if wanted <= have:
                proof = name
                break
        for capture in captures if proof == "?" else []:
            content = capture.read_text(encoding="utf-8", errors="replace")
            have = set(numbers_in(content)) | {
                normalize_number(t) for t in re.findall(r"\d[\d_]*(?:\.\d+)?", content)
            }
            if wanted <= have:
                proof = str(capture.relative_to(ROOT))
                break
        if proof == "?":
            for name, body in candidates:
                have = {normalize_number(t) for t in re.findall(r"\d[\d_]*(?:\.\d+)?", body)}
                if wanted <= have:
                    proof = name
                    break
        text = unit.replace("\\", "\\\\").replace('"', '\\"')
        print(f'[[claim]]\ntext = "{text}"\nproof = "{proof}"\n')
    return 0


def main(argv):
    command = argv[1] if len(argv) > 1 else "check"
    if command == "check":
        return check()
    if command == "index" and len(argv) == 3:
        return index(argv[2])
    if command == "draft" and len(argv) == 3:
        return draft(argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
