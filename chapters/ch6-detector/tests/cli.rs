//! The command line: scoring any trace, and errors that name the line and
//! column of a bad file.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ch6-detector"))
        .args(args)
        .output()
        .expect("the chapter binary runs")
}

fn trace_file(name: &str, text: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, text).expect("a temporary trace");
    path.to_string_lossy().into_owned()
}

#[test]
fn eval_scores_a_readers_trace() {
    let path = ch6_detector::traces::path("task-leak");
    let output = run(&["eval", path.to_str().unwrap()]);
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("TASK_GROWTH@124"), "{stdout}");
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
    for args in [&["--frobnicate"][..], &["eval"], &["bad", "good"]] {
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
