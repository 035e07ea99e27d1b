#!/usr/bin/env python3
"""Checks a built mdBook: every local link and image resolves, every
#fragment exists on its page, and no include directive was left unexpanded."""

import html.parser
import pathlib
import sys
import urllib.parse


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets = []
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for name in ("href", "src"):
            if tag in ("a", "img") and attrs.get(name):
                self.targets.append(attrs[name])


def parse(path, cache={}):
    if path not in cache:
        parser = Links()
        parser.feed(path.read_text(encoding="utf-8"))
        cache[path] = parser
    return cache[path]


def main(root):
    root = pathlib.Path(root)
    problems = []
    for page in sorted(root.rglob("*.html")):
        if page.name in ("print.html", "toc.html", "404.html"):
            continue
        text = page.read_text(encoding="utf-8")
        if "{{#include" in text or "{{#rustdoc_include" in text:
            problems.append(f"{page}: an include directive was not expanded")
        for target in parse(page).targets:
            url = urllib.parse.urlparse(target)
            if url.scheme or target.startswith("//") or target.startswith("mailto:"):
                continue
            path = urllib.parse.unquote(url.path)
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                problems.append(f"{page.relative_to(root)}: broken link {target}")
            elif url.fragment and resolved.suffix == ".html":
                if url.fragment not in parse(resolved).ids:
                    problems.append(f"{page.relative_to(root)}: missing anchor {target}")
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"checked {root}: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "target/book"))
