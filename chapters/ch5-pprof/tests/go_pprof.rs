//! Go's pprof habits against the chapter's server: the real `go tool pprof`
//! reads `/debug/pprof/heap` (Debian's `golang-go`; skipped with a message
//! when Go is missing outside CI), and the captures the page shows still
//! cite the lines the live source has.
//!
//! `-seconds 1` makes pprof wait one real second for the delta profile, so
//! this file takes a couple of seconds.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ch5_pprof::server::{self, App};
use ch5_pprof::{DEFAULT_LEAK_CAP_BYTES, REQUESTS_PER_PHASE, bad};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// The server's setting: one sample per 512 KiB allocated, on average.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "malloc_conf")]
pub static malloc_conf: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:19\0";

const CACHE_DATA: &str = "<ch5_pprof::bad::LeakyService as ch5_pprof::SeedService>::cache_data";

/// Whether `go` runs here. Outside CI a missing Go skips the test, loudly;
/// in CI it is a failure, since CI installs `golang-go`.
fn go_is_installed() -> bool {
    let found = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "`go` is not installed, and CI must run this test: apt-get install golang-go"
        );
        eprintln!("SKIPPED: `go` is not installed (apt-get install golang-go to run this test)");
    }
    found
}

/// Runs `go tool pprof ARGS` on the blocking pool (the server keeps serving
/// on this thread) and returns what it printed.
async fn pprof(args: Vec<String>) -> String {
    let scratch = std::env::temp_dir().join(format!("ch5-go-pprof-{}", std::process::id()));
    tokio::task::spawn_blocking(move || {
        let output = Command::new("go")
            .args(["tool", "pprof"])
            .args(&args)
            // Where pprof saves what it fetched.
            .env("PPROF_TMPDIR", &scratch)
            .output()
            .expect("go tool pprof runs");
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "go tool pprof {args:?}:\n{text}");
        text
    })
    .await
    .unwrap()
}

/// The rows of a `-top` table: (flat, function).
fn top_rows(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("flat  flat%"))
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() >= 6).then(|| (fields[0].to_string(), fields[5..].join(" ")))
        })
        .collect()
}

/// A pprof amount (`8.62MB`, `517.01kB`, `0`) in bytes.
fn bytes(amount: &str) -> f64 {
    let split = amount
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(amount.len());
    let (number, unit) = amount.split_at(split);
    let scale = match unit {
        "" | "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => panic!("unit {other} in {amount}"),
    };
    number.parse::<f64>().expect("a number") * scale
}

/// The line of `bad.rs` that leaks: the cache insert.
fn leaking_line() -> (usize, &'static str) {
    let source = include_str!("../src/bad.rs");
    source
        .lines()
        .enumerate()
        .find(|(_, line)| line.contains("state.cache.insert(key, vec![0u8; size])"))
        .map(|(index, line)| (index + 1, line))
        .expect("bad.rs inserts into its cache")
}

// ANCHOR: go_pprof
#[tokio::test(flavor = "current_thread")]
async fn go_tool_pprof_names_the_leak_its_line_and_its_growth() {
    if !go_is_installed() {
        return;
    }
    let stop = CancellationToken::new();
    let app = App::new(Arc::new(bad::LeakyService::new()), DEFAULT_LEAK_CAP_BYTES);
    let (addr, server) = server::spawn_on_loopback(app, stop.clone()).await.unwrap();
    let client = reqwest::Client::new();
    let leak = |id: String, size: usize| {
        let request = client.get(format!("http://{addr}/leak?id={id}&size={size}"));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    for i in 0..REQUESTS_PER_PHASE {
        assert_eq!(leak(format!("key-{i}"), 5 * 1024).await, 200);
    }
    let heap = format!("http://{addr}/debug/pprof/heap");

    // -top: the leak site is the top frame.
    let top = pprof(vec!["-top".into(), heap.clone()]).await;
    assert_eq!(top_rows(&top)[0].1, CACHE_DATA, "{top}");

    // -list: the leaking line carries the bytes.
    let (line, text) = leaking_line();
    let list = pprof(vec!["-list".into(), "cache_data".into(), heap.clone()]).await;
    let listed = list
        .lines()
        .find(|row| row.contains(&format!(" {line}:")))
        .unwrap_or_else(|| panic!("no line {line} in\n{list}"));
    assert!(listed.ends_with(text), "{listed}");
    assert!(
        !listed.trim_start().starts_with('.'),
        "no bytes on {listed}"
    );

    // -traces: each sampled stack in full; the insert's caller is the seed's loop.
    let traces = pprof(vec!["-traces".into(), heap.clone()]).await;
    let insert_trace: Vec<&str> = traces
        .split("-----------+")
        .map(|trace| trace.lines().collect::<Vec<&str>>())
        .find(|trace| trace.len() > 2 && trace[1].ends_with(CACHE_DATA))
        .unwrap_or_else(|| panic!("no trace with the insert at its leaf:\n{traces}"));
    assert_eq!(insert_trace[2].trim(), "ch5_pprof::seed_iteration");

    // -base: two saved profiles, 2000 leaks apart; the diff is the insert.
    let scratch = std::env::temp_dir().join(format!("ch5-go-pprof-base-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut saved = Vec::new();
    for phase in 0..2 {
        let body = client
            .get(&heap)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let file = scratch.join(format!("heap{phase}.pb.gz"));
        std::fs::write(&file, &body).unwrap();
        saved.push(file.display().to_string());
        for i in 0..REQUESTS_PER_PHASE {
            assert_eq!(leak(format!("base-{phase}-{i}"), 5 * 1024).await, 200);
        }
    }
    let diff = pprof(vec![
        "-top".into(),
        "-base".into(),
        saved[0].clone(),
        saved[1].clone(),
    ])
    .await;
    assert_eq!(top_rows(&diff)[0].1, CACHE_DATA, "{diff}");
    std::fs::remove_dir_all(&scratch).unwrap();

    // -seconds 1: the delta profile holds what was leaked during that second.
    let window = tokio::spawn(pprof(vec![
        "-seconds".into(),
        "1".into(),
        "-top".into(),
        heap.clone(),
    ]));
    let mut leaked_during = 0;
    while !window.is_finished() {
        // 256 KiB every 10 ms or so: megabytes over the second, even on a
        // loaded machine.
        assert_eq!(
            leak(format!("window-{leaked_during}"), 256 << 10).await,
            200
        );
        leaked_during += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let growth = window.await.unwrap();
    assert!(growth.contains("Duration: 1"), "{growth}");
    let rows = top_rows(&growth);
    assert_eq!(rows[0].1, CACHE_DATA, "{growth}");
    // Megabytes leaked, sampled every 512 KiB: at least 1 MB must show.
    assert!(bytes(&rows[0].0) >= 1e6, "{growth}");

    drop(client);
    stop.cancel();
    server.await.unwrap().unwrap();
}
// ANCHOR_END: go_pprof

#[tokio::test(flavor = "current_thread")]
async fn the_debug_1_text_view_starts_with_the_leak_and_its_line() {
    let stop = CancellationToken::new();
    let app = App::new(Arc::new(bad::LeakyService::new()), DEFAULT_LEAK_CAP_BYTES);
    let (addr, server) = server::spawn_on_loopback(app, stop.clone()).await.unwrap();
    let client = reqwest::Client::new();
    for i in 0..REQUESTS_PER_PHASE {
        let url = format!("http://{addr}/leak?id=text-{i}");
        assert_eq!(client.get(url).send().await.unwrap().status(), 200);
    }
    let text = client
        .get(format!("http://{addr}/debug/pprof/heap?debug=1"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.starts_with("heap profile: "), "{text}");
    assert!(text.contains("sampled every 524288 bytes on average"));
    let first_frame = text.lines().find(|line| line.starts_with("#\t")).unwrap();
    let (line, _) = leaking_line();
    assert!(
        first_frame.contains(CACHE_DATA)
            && first_frame.ends_with(&format!("chapters/ch5-pprof/src/bad.rs:{line}")),
        "{first_frame}"
    );
    drop(client);
    stop.cancel();
    server.await.unwrap().unwrap();
}

// ANCHOR: captures_checked
/// Every `file:line` the go-pprof captures cite still reads as it did when
/// they were taken (`output/go-pprof-cited-lines.txt`, written by
/// capture.sh): an edit that moves the code fails here until the captures
/// are taken again (`just capture ch5-pprof`).
#[test]
fn the_captures_cite_the_lines_the_source_has_now() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = root.parent().unwrap().parent().unwrap();
    let recorded = std::fs::read_to_string(root.join("output/go-pprof-cited-lines.txt")).unwrap();
    let recorded: Vec<(&str, &str)> = recorded
        .lines()
        .map(|line| line.split_once('\t').expect("cite<TAB>text"))
        .collect();
    assert!(recorded.len() >= 5, "{recorded:?}");
    for (cite, then) in &recorded {
        let (file, line) = cite.rsplit_once(':').unwrap();
        let source = std::fs::read_to_string(workspace.join(file)).unwrap();
        let now = source.lines().nth(line.parse::<usize>().unwrap() - 1);
        assert_eq!(
            now,
            Some(*then),
            "{cite} moved: run `just capture ch5-pprof` again"
        );
    }
    // And nothing a capture cites is missing from the record.
    for entry in std::fs::read_dir(root.join("output")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("go-pprof-") || name == "go-pprof-cited-lines.txt" {
            continue;
        }
        let capture = std::fs::read_to_string(&path).unwrap();
        for (start, _) in capture.match_indices("chapters/ch5-pprof/src/") {
            let cite: String = capture[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "/_-.:".contains(*c))
                .collect();
            let cite = cite.trim_end_matches([':', '.']);
            if cite.contains(':') {
                assert!(
                    recorded.iter().any(|(known, _)| *known == cite),
                    "{name} cites {cite}, which go-pprof-cited-lines.txt lacks"
                );
            }
        }
    }
}
// ANCHOR_END: captures_checked
