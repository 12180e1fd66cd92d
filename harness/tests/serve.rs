//! `faultline serve` over a store of synthetic runs: the index lists every
//! run folder (an unreadable one with its reason), filters by verdict,
//! serves a run's files and folders, compares two runs, binds 127.0.0.1,
//! and answers 404 to every path that leads out of the store (`..` plain
//! or percent-encoded, absolute paths, links that point outside).

use std::path::{Path, PathBuf};

use faultline::report::demo::{DemoKind, write_demo_run};
use faultline::serve::{bind, canonical_store, router};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("serve-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The status code of a request sent byte for byte (no client-side
/// normalisation of `..`).
async fn raw_status(addr: std::net::SocketAddr, target: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line for {target}: {text:.200}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_lists_filters_compares_and_never_leaves_the_store() {
    let store = scratch("store");
    let valid = "register/20260101T000000.000Z";
    let invalid = "register/20260101T000001.000Z";
    let broken = "append/20260101T000002.000Z";
    write_demo_run(&store.join(valid), DemoKind::Valid, 300, 1).unwrap();
    write_demo_run(&store.join(invalid), DemoKind::Invalid, 300, 2).unwrap();
    std::fs::create_dir_all(store.join(broken)).unwrap();
    std::fs::write(store.join(broken).join("history.jsonl"), "").unwrap();
    std::fs::write(store.join(broken).join("results.json"), "{not json").unwrap();
    let outside = scratch("outside").join("secret.txt");
    std::fs::write(&outside, "secret").unwrap();
    std::os::unix::fs::symlink(&outside, store.join(valid).join("leak.txt")).unwrap();

    let listener = bind(0).await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert_eq!(addr.ip(), std::net::Ipv4Addr::LOCALHOST, "binds 127.0.0.1");
    let app = router(canonical_store(&store).unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let base = format!("http://{addr}");
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move {
            let r = reqwest::get(&url).await.unwrap();
            let status = r.status().as_u16();
            let ctype = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            (status, ctype, r.text().await.unwrap())
        }
    };

    let (status, _, index) = get("/").await;
    assert_eq!(status, 200);
    assert!(index.contains("3 runs in the store, 3 shown"), "{index}");
    for rel in [valid, invalid, broken] {
        assert!(index.contains(&format!("/runs/{rel}/report.html")), "{rel}");
    }
    assert!(index.contains(">invalid<") || index.contains(">invalid</td>"));
    assert!(
        index.contains("unreadable") && index.contains("results.json"),
        "the unreadable run is listed with its reason: {index}"
    );

    let (_, _, only_invalid) = get("/?verdict=invalid").await;
    assert!(only_invalid.contains("3 runs in the store, 1 shown"));
    assert!(
        only_invalid.contains(invalid) && !only_invalid.contains(&format!("value=\"{valid}\""))
    );

    let (status, ctype, history) = get(&format!("/runs/{valid}/history.jsonl")).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    assert!(history.lines().count() > 100);
    let (status, _, listing) = get(&format!("/runs/{valid}/")).await;
    assert_eq!(status, 200);
    assert!(listing.contains("history.jsonl") && listing.contains("config.json"));

    let (status, _, cmp) = get(&format!("/compare?run={valid}&run={invalid}")).await;
    assert_eq!(status, 200);
    assert!(cmp.contains("Two runs side by side"));
    assert!(
        cmp.contains("<tr class=diff><td>verdict</td><td>valid</td><td>invalid</td></tr>"),
        "{cmp}"
    );
    assert!(cmp.contains("latency p99"));
    let (status, _, _) = get(&format!("/compare?run={valid}")).await;
    assert_eq!(status, 400, "one run is not a comparison");

    for target in [
        "/runs/../../../etc/passwd",
        "/runs/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/runs//etc/passwd",
        "/runs/%2Fetc%2Fpasswd",
        "/runs/register/..%2F..%2F..%2Fetc%2Fpasswd",
        &format!("/runs/{valid}/leak.txt"),
        "/compare?run=/etc&run=../outside",
        "/etc/passwd",
        "/runs/register/missing",
    ] {
        assert_eq!(raw_status(addr, target).await, 404, "{target}");
    }
}
