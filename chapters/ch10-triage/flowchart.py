#!/usr/bin/env python3
"""Draws book/img/ch10-triage-flowchart.svg: the seed's five investigation
steps as the decision procedure leakscope::doctor follows. Run from the
repository root: python3 chapters/ch10-triage/flowchart.py"""

from html import escape

WIDTH, LEFT_X, LEFT_W, RIGHT_X, RIGHT_W = 940, 20, 400, 500, 420
STEP_H, DECISION_H, GAP = 48, 44, 26
FONT = "font-family='sans-serif' font-size='13'"

# (question, verdict when the arrow goes right, its next step, label on the right arrow)
DECISIONS = [
    ("alive tasks still rising?", "TASK LEAK", "ch1: give tasks an exit · ch5: task dump · ch9: timeouts", "yes"),
    ("threads rose (≥ 8 and ≥ 25 %)?", "THREADS", "bound the pool: max_blocking_threads (ch10)", "yes"),
    ("live bytes still rising in the last quarter?", "LEAK",
     "3. hot spots: heap profile diff (ch5) → 4. code review: ch2 cycles, ch3 caches, ch8 slices", "yes"),
    ("resident grew beyond what the program holds?", "NOT A LEAK", "nothing grew, or the program's own plateau (ch3 bounds)", "no"),
    ("allocator keeps > 1.5 × the peak?", "FRAGMENTATION/ARENAS", "MALLOC_ARENA_MAX, another allocator (ch10)", "yes"),
    ("grew only when the peak grew?", "RATCHET", "bound the peak: limits, backpressure (ch9) · doctor::replay_peak", "yes"),
    ("held flat while the same load repeated?", "NOT A LEAK", "a plateau: the allocator reuses it", "yes"),
]


def box(x, y, w, h, text, fill, bold=False, rx=6):
    weight = " font-weight='bold'" if bold else ""
    lines = text.split("\n")
    out = [f"<rect x='{x}' y='{y}' width='{w}' height='{h}' rx='{rx}' fill='{fill}' stroke='#333'/>"]
    for i, line in enumerate(lines):
        ty = y + h / 2 + (i - (len(lines) - 1) / 2) * 16 + 4
        out.append(f"<text x='{x + w / 2}' y='{ty}' text-anchor='middle' {FONT}{weight}>{escape(line)}</text>")
    return out


def arrow(x1, y1, x2, y2, label=""):
    out = [f"<line x1='{x1}' y1='{y1}' x2='{x2}' y2='{y2}' stroke='#333' marker-end='url(#head)'/>"]
    if label:
        out.append(f"<text x='{(x1 + x2) / 2 + 4}' y='{(y1 + y2) / 2 - 4}' {FONT} fill='#555'>{label}</text>")
    return out


def wrap(text, width=58):
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width and line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines)


def main():
    parts, y = [], 20
    centre = LEFT_X + LEFT_W / 2
    parts += box(LEFT_X, y, LEFT_W, STEP_H, "1. Baseline: a first sample at rest\nlive bytes, RSS anon/file, tasks, threads", "#e8f0fe", True)
    parts += arrow(centre, y + STEP_H, centre, y + STEP_H + GAP)
    y += STEP_H + GAP
    parts += box(LEFT_X, y, LEFT_W, STEP_H, "2. Trend: samples under load over a window\n(leakscope::doctor)", "#e8f0fe", True)
    parts += arrow(centre, y + STEP_H, centre, y + STEP_H + GAP)
    y += STEP_H + GAP
    for index, (question, verdict, step, label) in enumerate(DECISIONS):
        parts += box(LEFT_X, y, LEFT_W, DECISION_H, question, "#fff8e1", rx=22)
        colour = "#e6f4ea" if verdict == "NOT A LEAK" else "#fce8e6"
        text = verdict + "\n" + wrap(step)
        height = 18 + 16 * text.count("\n") + 12
        top = y + DECISION_H / 2 - height / 2
        parts += arrow(LEFT_X + LEFT_W, y + DECISION_H / 2, RIGHT_X, y + DECISION_H / 2, label)
        parts += box(RIGHT_X, top, RIGHT_W, height, text, colour)
        last = index == len(DECISIONS) - 1
        down = "no" if label == "yes" else "yes"
        parts += arrow(centre, y + DECISION_H, centre, y + DECISION_H + GAP, down)
        y += DECISION_H + GAP + (10 if height > DECISION_H else 0)
        if last:
            parts += box(LEFT_X, y, LEFT_W, STEP_H, "RETENTION\nfreed pages wait for decay or a purge (ch8)", "#fce8e6")
            y += STEP_H
    y += GAP
    parts += box(LEFT_X, y, WIDTH - 2 * LEFT_X, STEP_H,
                 "5. Verify: run the doctor again on the fix; keep a test that fails on the old code\n"
                 "(check::LeakCheck, doctor::replay_peak, the ch6 detector on the service's metrics)", "#e8f0fe", True)
    height = y + STEP_H + 20
    svg = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' viewBox='0 0 {WIDTH} {height}'>",
        "<defs><marker id='head' markerWidth='8' markerHeight='8' refX='7' refY='4' orient='auto'>"
        "<path d='M0,0 L8,4 L0,8 z' fill='#333'/></marker></defs>",
        f"<rect width='{WIDTH}' height='{height}' fill='white'/>",
        *parts,
        "</svg>",
    ]
    with open("book/img/ch10-triage-flowchart.svg", "w", encoding="utf-8") as out:
        out.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
