//! Both services expose `/metrics` (leakscope's collector through
//! `prometheus-client`): the names chapter 6's alert rules read, in a text
//! that `promtool check metrics` accepts.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use ch5_pprof::server::{self, App};
use ch5_pprof::{DEFAULT_LEAK_CAP_BYTES, REQUESTS_PER_PHASE, SeedService, WORKER_EVERY, bad, good};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `/metrics` of `service` after the seed's 2000 requests.
async fn metrics_after_requests(service: Arc<dyn SeedService>) -> String {
    let stop = CancellationToken::new();
    let app = App::new(service, DEFAULT_LEAK_CAP_BYTES);
    let (addr, server) = server::spawn_on_loopback(app.clone(), stop.clone())
        .await
        .unwrap();
    let client = reqwest::Client::new();
    for i in 0..REQUESTS_PER_PHASE {
        let url = format!("http://{addr}/leak?id=key-{i}");
        assert_eq!(client.get(url).send().await.unwrap().status(), 200);
    }
    let response = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    drop(client);
    stop.cancel();
    server.await.unwrap().unwrap();
    app.service().shutdown().await;
    text
}

fn gauge(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

/// `promtool check metrics` on `text`; `None` when promtool is missing
/// outside CI (CI must have it).
fn promtool_check(text: &str) -> Option<(bool, String)> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool cannot run ({error}), and CI must run this check: \
                 apt-get install prometheus"
            );
            eprintln!("SKIPPED promtool check: promtool is not installed ({error})");
            return None;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    Some((output.status.success(), said))
}

// ANCHOR: metrics
#[tokio::test(flavor = "current_thread")]
async fn both_services_export_what_chapter_6_alerts_on_and_promtool_accepts_it() {
    let leaky = metrics_after_requests(Arc::new(bad::LeakyService::new())).await;
    let fixed = metrics_after_requests(Arc::new(good::FixedService::new())).await;
    for text in [&leaky, &fixed] {
        assert!(gauge(text, "jemalloc_allocated_bytes") > 0);
        assert!(text.contains("# TYPE tokio_alive_tasks gauge"));
        // The standard process collector owns `process_*`: no clash.
        assert!(!text.contains("process_resident_memory_bytes"), "{text}");
        if let Some((passed, said)) = promtool_check(text) {
            assert!(passed, "promtool check metrics:\n{said}\n{text}");
        }
    }
    // The leaky service's workers never end: one per 20 requests.
    let leaked_workers = (REQUESTS_PER_PHASE / WORKER_EVERY) as i64;
    assert!(
        gauge(&leaky, "tokio_alive_tasks") >= leaked_workers,
        "{leaky}"
    );
    assert!(
        gauge(&fixed, "tokio_alive_tasks")
            < gauge(&leaky, "tokio_alive_tasks") - leaked_workers / 2,
        "{fixed}"
    );
}
// ANCHOR_END: metrics
