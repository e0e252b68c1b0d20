//! In a real browser, against the hub emulator (scripts/hub.mjs: a hub and its CDN on two
//! origins of 127.0.0.1, answering as Hugging Face's are documented to): a download through the
//! `resolve` 302, the SHA-256 from the hub's API or its LFS pointer (never from the CDN's ETag,
//! which for Xet files is 64 hex digits that are not the hash), a resume after the signed CDN URL
//! expired, and the update check.
//!
//! Needs the emulator: `node scripts/hub.mjs`, its hub origin in `CANDLELIGHT_HUB` at build
//! time; scripts/test_web.sh starts it.
#![cfg(target_arch = "wasm32")]

mod in_browser;

use candlelight::download::{fetch, remote, DownloadError};
use candlelight::store::indexed_db::ModelDb;
use candlelight::web::EngineCore;
use in_browser::*;
use serde_json::Value;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

const HUB: &str = match option_env!("CANDLELIGHT_HUB") {
    Some(s) => s,
    None => "http://127.0.0.1:8788",
};

/// A repository of the emulator's own for one test (tests run concurrently).
fn repo(test: &str) -> String {
    format!("candlelight-tests/{test}-{}", run_id())
}

fn resolve(repo: &str, file: &str) -> String {
    format!("{HUB}/{repo}/resolve/main/{file}")
}

fn hub_options(retries: u32) -> fetch::Options<'static> {
    fetch::Options {
        hub_mirrors: vec![HUB.to_string()],
        ..options(CHUNK, retries)
    }
}

/// Steers the emulator for `repo`; answers its head commit and files (path → SHA-256).
async fn control(repo: &str, query: &str) -> Value {
    get_json_at(&format!("{HUB}/__control?repo={repo}&{query}")).await
}

/// Steers `repo` with `query`; answers the SHA-256 of `file` at its head commit.
async fn sha_after(repo: &str, query: &str, file: &str) -> String {
    control(repo, query).await["files"][file]
        .as_str()
        .unwrap()
        .to_string()
}

async fn hub_log(repo: &str) -> Vec<Value> {
    let log = get_json_at(&format!("{HUB}/__log?repo={repo}")).await;
    log.as_array().unwrap().clone()
}

async fn fresh(url: &str) -> ModelDb {
    let db = ModelDb::open().await.unwrap();
    db.delete_file(url).await.unwrap();
    db
}

#[wasm_bindgen_test]
async fn a_hub_file_comes_through_the_302_and_is_verified_by_the_apis_sha256() {
    let repo = repo("xet");
    let sha = sha_after(&repo, "", "tiny-xet.gguf").await;
    let url = resolve(&repo, "tiny-xet.gguf");
    let db = fresh(&url).await;
    let record = fetch::ensure(&db, &url, &hub_options(0))
        .await
        .expect("a Xet file from the hub downloads and verifies");
    assert!(record.complete && record.verified, "{record:?}");
    assert_eq!(record.sha256.as_deref(), Some(sha.as_str()));
    let etag = record.etag.clone().unwrap_or_default();
    assert!(
        etag.len() == 66 && !etag.contains(&sha),
        "the CDN's ETag is 64 hex digits and not the hash: {etag}"
    );
    assert_eq!(sha256_of(&stored(&db, &url).await).await, sha);

    let log = hub_log(&repo).await;
    let steps: Vec<(&str, &str, u64)> = log
        .iter()
        .map(|e| {
            (
                e["server"].as_str().unwrap(),
                e["method"].as_str().unwrap(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("hub", "POST", 200),
            ("hub", "GET", 302),
            ("cdn", "GET", 206)
        ],
        "paths-info, then the 302, then the CDN: {log:?}"
    );

    // Loading it again needs nothing from the hub, and says it was verified.
    let engine = EngineCore::load(
        url.clone().into(),
        js_options(&[("hubMirrors", js_sys::Array::of1(&HUB.into()).into())]),
    )
    .await
    .unwrap();
    assert_eq!(info(&engine, "verified").as_bool(), Some(true));
    assert_eq!(info(&engine, "sha256").as_string(), Some(sha));
    assert_eq!(
        hub_log(&repo).await.len(),
        log.len(),
        "no request on a stored file"
    );
}

#[wasm_bindgen_test]
async fn a_xet_etag_is_never_taken_for_the_hash() {
    let repo = repo("silent");
    control(&repo, "api=0&raw=0").await;
    let url = resolve(&repo, "tiny-xet.gguf");
    let db = fresh(&url).await;
    let record = fetch::ensure(&db, &url, &hub_options(0))
        .await
        .expect("with no hash known the download still completes");
    assert!(record.complete, "{record:?}");
    assert!(!record.verified, "nothing to verify against: {record:?}");
    assert_eq!(record.sha256, None, "the CDN's ETag is not a hash");
    let file = sha_after(&repo, "", "tiny-xet.gguf").await;
    assert_eq!(sha256_of(&stored(&db, &url).await).await, file);
}

#[wasm_bindgen_test]
async fn the_lfs_pointer_gives_the_hash_when_the_api_refuses() {
    let repo = repo("pointer");
    let sha = sha_after(&repo, "api=0", "tiny-xet.gguf").await;
    let url = resolve(&repo, "tiny-xet.gguf");
    let db = fresh(&url).await;
    let record = fetch::ensure(&db, &url, &hub_options(0)).await.unwrap();
    assert!(record.verified, "{record:?}");
    assert_eq!(record.sha256, Some(sha));
    let log = hub_log(&repo).await;
    assert_eq!(log[0]["status"], 404, "paths-info refused: {log:?}");
    assert!(
        log[1]["path"].as_str().unwrap().contains("/raw/main/") && log[1]["status"] == 200,
        "then the pointer file: {log:?}"
    );
}

#[wasm_bindgen_test]
async fn a_cut_download_resumes_from_the_resolve_url_after_the_signed_url_expired() {
    let repo = repo("expired");
    let cut = 3 * CHUNK + 500;
    let sha = control(&repo, &format!("cut={cut}")).await["files"]["tiny-lfs.gguf"]
        .as_str()
        .unwrap()
        .to_string();
    let url = resolve(&repo, "tiny-lfs.gguf");
    let db = fresh(&url).await;
    let err = fetch::ensure(&db, &url, &hub_options(0))
        .await
        .expect_err("the cut fails a download that may not retry");
    assert!(matches!(err, DownloadError::Network { .. }), "{err:?}");
    let mut kept = db.chunk_indices(&url).await.unwrap();
    kept.sort();
    assert_eq!(kept, vec![0, 1, 2], "the chunks before the cut are kept");

    control(&repo, "expire=1").await;
    let record = fetch::ensure(&db, &url, &hub_options(0)).await.unwrap();
    assert!(record.verified, "{record:?}");
    assert_eq!(sha256_of(&stored(&db, &url).await).await, sha);
    let cdn: Vec<Value> = hub_log(&repo)
        .await
        .into_iter()
        .filter(|e| e["server"] == "cdn")
        .collect();
    assert_eq!(cdn.len(), 2, "{cdn:?}");
    assert_eq!(cdn[0]["cut"], true);
    assert_eq!(
        (cdn[1]["generation"].as_u64(), cdn[1]["status"].as_u64()),
        (Some(1), Some(206)),
        "the resume came through a new 302, not the expired URL: {cdn:?}"
    );
    assert_eq!(
        cdn[1]["range"],
        format!("bytes={}-{}", 3 * CHUNK, record.size - 1)
    );
}

#[wasm_bindgen_test]
async fn the_update_check_says_no_before_a_new_commit_and_yes_after() {
    let repo = repo("update");
    let first = control(&repo, "").await;
    let by_hash = resolve(&repo, "tiny-lfs.gguf");
    let by_etag = resolve(&repo, "tiny-xet.gguf");
    let db = fresh(&by_hash).await;
    fresh(&by_etag).await;
    fetch::ensure(&db, &by_hash, &hub_options(0)).await.unwrap();
    // The Xet file stored while the hub's API and pointer were down: no hash, only its ETag.
    control(&repo, "api=0&raw=0").await;
    fetch::ensure(&db, &by_etag, &hub_options(0)).await.unwrap();
    control(&repo, "api=1&raw=1").await;

    let check = remote::check_for_update(&db, &by_hash, &hub_options(0))
        .await
        .unwrap();
    assert!(!check.update_available, "{check:?}");
    let check = remote::check_for_update(&db, &by_etag, &hub_options(0))
        .await
        .unwrap();
    assert!(!check.update_available, "{check:?}");
    let before = hub_log(&repo).await.len();

    let next = control(&repo, "commit=tiny-lfs.gguf:tiny-llama-q4_0.gguf").await;
    control(&repo, "commit=tiny-xet.gguf:tiny-llama-q8_0.gguf").await;
    assert_ne!(next["commit"], first["commit"]);
    let check = remote::check_for_update(&db, &by_hash, &hub_options(0))
        .await
        .unwrap();
    assert!(check.update_available, "{check:?}");
    assert_eq!(
        check.current.sha256.as_deref(),
        next["files"]["tiny-lfs.gguf"].as_str()
    );
    let check = remote::check_for_update(&db, &by_etag, &hub_options(0))
        .await
        .unwrap();
    assert!(check.update_available, "the ETag changed: {check:?}");

    let downloads = hub_log(&repo).await[before..]
        .iter()
        .filter(|e| e["server"] == "cdn" && e["method"] == "GET")
        .count();
    assert_eq!(downloads, 0, "the check downloads nothing");
    let unknown =
        remote::check_for_update(&db, &resolve(&repo, "nothing.gguf"), &hub_options(0)).await;
    assert!(
        matches!(unknown, Err(DownloadError::HttpStatus { status: 404, .. })),
        "{unknown:?}"
    );
}
