//! The command line: scoring any trace, and errors that name the line and
//! column of a bad file.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ch6-detector"))
        .args(args)
        .output()
        .expect("the chapter binary runs")
}

/// The last two cells of the leakscope row: first true, false.
fn truth_cells(stdout: &str) -> (String, String) {
    let row = stdout
        .lines()
        .find(|line| line.contains(" leakscope "))
        .expect("a leakscope row");
    // Columns are separated by two spaces or more; a cell has single spaces.
    let cells: Vec<&str> = row
        .split("  ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .collect();
    match cells[..] {
        [.., first_true, false_alerts] => (first_true.to_string(), false_alerts.to_string()),
        _ => panic!("a short row: {row}"),
    }
}

fn trace_file(name: &str, text: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, text).expect("a temporary trace");
    path.to_string_lossy().into_owned()
}

// ANCHOR: eval
#[test]
fn eval_scores_a_readers_trace_with_or_without_ground_truth() {
    use ch6_detector::traces::{Family, generate};
    let case = generate(Family::TaskLeak, 1);
    let path = trace_file(
        "task-leak-1.csv",
        &leakscope::detect::write_trace(&case.trace),
    );
    let leak_s = case.trace[case.leak_from.unwrap()].t_ms / 1000;

    // With the leak's start: first true and false are filled in.
    let output = run(&["eval", &format!("{path}@{leak_s}")]);
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let (first_true, false_alerts) = truth_cells(&stdout);
    assert!(first_true.starts_with('+'), "{stdout}");
    assert_eq!(false_alerts, "0", "{stdout}");
    assert!(stdout.contains("TASK_GROWTH RAISED"), "{stdout}");

    // Without it: neither is guessed.
    let output = run(&["eval", &path]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(truth_cells(&stdout), ("?".into(), "?".into()), "{stdout}");

    // `@none`: every alert is false.
    let output = run(&["eval", &format!("{path}@none")]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(truth_cells(&stdout), ("—".into(), "1".into()), "{stdout}");
}
// ANCHOR_END: eval

#[test]
fn a_trace_saved_with_a_byte_order_mark_is_read() {
    let text = "\u{feff}t_ms,heap_bytes,objects,tasks\n0,1,2,3\n1000,1,2,3\n";
    let output = run(&["eval", &trace_file("bom.csv", text)]);
    assert!(output.status.success(), "{output:?}");
}

// ANCHOR: bad_trace
#[test]
fn a_bad_trace_is_refused_with_its_line_and_column() {
    let cases = [
        (
            "t_ms,heap_bytes,tasks\n0,1,2\n",
            "line 1, column 4: missing column `objects`",
        ),
        (
            "t_ms,heap_bytes,objects,tasks\n0,1,2,3\n1000,12MB,2,3\n",
            "line 3, column 2: `12MB` is not a non-negative integer (heap_bytes)",
        ),
        (
            "t_ms,heap_bytes,objects,tasks\n2000,1,2,3\n1000,1,2,3\n",
            "line 3, column 1: t_ms 1000 is not after the previous row's 2000",
        ),
    ];
    for (index, (text, expected)) in cases.into_iter().enumerate() {
        let path = trace_file(&format!("bad-{index}.csv"), text);
        let output = run(&["eval", &path]);
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(expected), "{stderr}");
    }
}
// ANCHOR_END: bad_trace

#[test]
fn unknown_arguments_print_usage_and_exit_2() {
    for args in [
        &["--frobnicate"][..],
        &["eval"],
        &["bad", "good"],
        &["eval", "x.csv@soon"],
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8(output.stderr)
                .unwrap()
                .contains("usage: ch6-detector")
        );
    }
}

#[test]
fn help_prints_usage_and_succeeds() {
    let output = run(&["--help"]);
    assert!(output.status.success());
    assert!(
        String::from_utf8(output.stdout)
            .unwrap()
            .contains("eval FILE.csv")
    );
}
