//! The browser side of a download: `fetch` with HTTP Range, one request per run of missing chunks,
//! the body cut into chunks as it streams in (JavaScript memory, never the wasm heap), each chunk
//! written to IndexedDB as soon as it is whole. A server that ignores Range gets the same loop:
//! its full body streams past and only the missing chunks are kept.

use std::collections::BTreeSet;

use js_sys::{Promise, Reflect, Uint8Array};
use sha2::{Digest, Sha256};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, ReadableStreamDefaultReader, Request, RequestInit, Response};

use super::hub::HubFile;
use super::remote::hub_facts;
use super::*;
use crate::store::indexed_db::{feed, new_generation, with_lock, FileRecord, ModelDb};
use crate::store::StoreError;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = fetch)]
    pub(crate) fn fetch_request(req: &Request) -> Promise;
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &js_sys::Function, ms: i32) -> JsValue;
}

/// How to download.
pub struct Options<'a> {
    pub chunk_size: u64,
    /// The whole file's expected SHA-256, if the caller knows it.
    pub sha256: Option<String>,
    /// Tries after a network failure that made no progress, with backoff.
    pub retries: u32,
    /// Origins of hub mirrors, whose `resolve` URLs are read as Hugging Face's are.
    pub hub_mirrors: Vec<String>,
    pub signal: Option<AbortSignal>,
    /// (phase, loaded, total) in bytes.
    pub on_progress: &'a dyn Fn(&str, u64, u64),
}

impl Options<'_> {
    fn check_abort(&self) -> Result<(), DownloadError> {
        match &self.signal {
            Some(s) if s.aborted() => Err(DownloadError::Aborted),
            _ => Ok(()),
        }
    }

    pub(crate) fn network(&self, url: &str, e: JsValue) -> DownloadError {
        if self.check_abort().is_err() {
            return DownloadError::Aborted;
        }
        let message = e
            .dyn_ref::<js_sys::Error>()
            .map(|e| String::from(e.message()))
            .unwrap_or_else(|| format!("{e:?}"));
        DownloadError::Network {
            url: url.into(),
            message,
        }
    }
}

fn storage(e: StoreError) -> DownloadError {
    match e {
        StoreError::Quota(m) => DownloadError::QuotaWrite(m),
        e => DownloadError::Storage(e.to_string()),
    }
}

pub(crate) async fn sleep(ms: f64) {
    let p = Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, ms as i32);
    });
    let _ = JsFuture::from(p).await;
}

/// Makes sure every chunk of `url` is stored, and the whole file verified when its SHA-256 is
/// known; resumes whatever an earlier try left. Returns the file's record. Tabs and workers of
/// the origin take turns on one file (a Web Lock): the second finds what the first stored.
pub async fn ensure(
    db: &ModelDb,
    url: &str,
    opts: &Options<'_>,
) -> Result<FileRecord, DownloadError> {
    let name = format!("candlelight-model {url}");
    with_lock(&name, opts.signal.as_ref(), ensure_locked(db, url, opts))
        .await
        .map_err(|e| opts.network(url, e))?
}

async fn ensure_locked(
    db: &ModelDb,
    url: &str,
    opts: &Options<'_>,
) -> Result<FileRecord, DownloadError> {
    let mut record = db.file(url).await.map_err(storage)?;
    // The hash a download is checked against: the caller's, else the hub's, asked only when the
    // network is needed anyway (a stored file loads offline).
    let mut sha256 = opts.sha256.clone();
    if sha256.is_none() && !record.as_ref().is_some_and(|r| r.complete) {
        if let Some(hub) = HubFile::parse(url, &opts.hub_mirrors) {
            sha256 = hub_facts(&hub, opts).await?.and_then(|f| f.sha256);
        }
    }
    if let (Some(r), Some(want)) = (record.as_mut(), sha256.as_ref()) {
        if r.sha256.as_ref() != Some(want) {
            r.sha256 = Some(want.clone());
            r.verified = false;
        }
    }
    // A chunk found damaged while verifying is fetched again: a second round at most.
    for _ in 0..3 {
        if !record.as_ref().is_some_and(|r| r.complete) {
            record = Some(fetch_missing(db, url, record, sha256.as_deref(), opts).await?);
        }
        let Some(mut r) = record.take() else { continue };
        let Some(expected) = r.sha256.clone().filter(|_| !r.verified) else {
            return Ok(r);
        };
        match verify(db, &mut r, &expected, opts).await {
            Ok(()) => return Ok(r),
            Err(VerifyError::Chunk(index)) => {
                db.delete_chunk(url, index).await.map_err(storage)?;
                r.complete = false;
                db.put_file(&r).await.map_err(storage)?;
                record = Some(r);
            }
            Err(VerifyError::Download(e)) => return Err(e),
        }
    }
    Err(DownloadError::Storage(
        "chunks keep failing their checks after being fetched again".into(),
    ))
}

/// Marks chunk `index` of `url` as needing a new download (it failed its check).
pub async fn forget_chunk(db: &ModelDb, url: &str, index: u64) -> Result<(), DownloadError> {
    db.delete_chunk(url, index).await.map_err(storage)?;
    if let Some(mut r) = db.file(url).await.map_err(storage)? {
        r.complete = false;
        r.verified = false;
        db.put_file(&r).await.map_err(storage)?;
    }
    Ok(())
}

enum VerifyError {
    Chunk(u64),
    Download(DownloadError),
}

async fn verify(
    db: &ModelDb,
    r: &mut FileRecord,
    expected: &str,
    opts: &Options<'_>,
) -> Result<(), VerifyError> {
    let mut hasher = Sha256::new();
    let n = chunk_count(r.size, r.chunk_size);
    for i in 0..n {
        opts.check_abort().map_err(VerifyError::Download)?;
        let bytes = match db.read_record_chunk(r, i).await {
            Ok(b) => b,
            Err(StoreError::CorruptChunk { index } | StoreError::MissingChunk { index }) => {
                return Err(VerifyError::Chunk(index))
            }
            Err(e) => return Err(VerifyError::Download(storage(e))),
        };
        feed(&mut hasher, &bytes);
        (opts.on_progress)("verify", ((i + 1) * r.chunk_size).min(r.size), r.size);
    }
    let actual = crate::hex::encode(&hasher.finalize());
    if actual != expected.to_ascii_lowercase() {
        db.delete_file(&r.url)
            .await
            .map_err(|e| VerifyError::Download(storage(e)))?;
        return Err(VerifyError::Download(DownloadError::Integrity {
            expected: expected.into(),
            actual,
        }));
    }
    r.verified = true;
    db.put_file(r)
        .await
        .map_err(|e| VerifyError::Download(storage(e)))
}

/// What a download is doing now, kept across tries.
struct Progress<'a> {
    db: &'a ModelDb,
    url: &'a str,
    /// The whole file's SHA-256, if known before the first byte.
    sha256: Option<&'a str>,
    record: Option<FileRecord>,
    present: BTreeSet<u64>,
    reported: u64,
}

impl Progress<'_> {
    fn stored_bytes(&self) -> u64 {
        let Some(r) = &self.record else { return 0 };
        self.present
            .iter()
            .map(|&i| (r.size - i * r.chunk_size).min(r.chunk_size))
            .sum()
    }

    fn report(&mut self, opts: &Options<'_>, partial: u64) {
        let Some(size) = self.record.as_ref().map(|r| r.size) else {
            return;
        };
        self.reported = self.reported.max(self.stored_bytes() + partial).min(size);
        (opts.on_progress)("download", self.reported, size);
    }
}

async fn fetch_missing(
    db: &ModelDb,
    url: &str,
    record: Option<FileRecord>,
    sha256: Option<&str>,
    opts: &Options<'_>,
) -> Result<FileRecord, DownloadError> {
    let present = match &record {
        Some(r) => db
            .record_chunks(r)
            .await
            .map_err(storage)?
            .into_iter()
            .collect(),
        None => BTreeSet::new(),
    };
    let mut p = Progress {
        db,
        url,
        sha256,
        record,
        present,
        reported: 0,
    };
    p.report(opts, 0);
    let mut failures = 0u32;
    let mut rechecks = 0;
    loop {
        opts.check_abort()?;
        // The first missing run by Range; a server that ignores Range streams everything, and
        // then the loop keeps every missing chunk up to the end of the last run.
        let (first, last, all_end) = match &p.record {
            None => (0, None, None),
            Some(r) => {
                let runs = missing_runs(
                    chunk_count(r.size, r.chunk_size),
                    &p.present.iter().copied().collect::<Vec<_>>(),
                );
                let (Some(run), Some(end)) = (runs.first(), runs.last()) else {
                    // Complete by this download's count: the store decides (a chunk may have
                    // been deleted or replaced meanwhile).
                    let stored = db.record_chunks(r).await.map_err(storage)?;
                    if stored.len() as u64 == chunk_count(r.size, r.chunk_size) {
                        break;
                    }
                    if rechecks >= 3 {
                        return Err(DownloadError::Storage(
                            "chunks written do not stay stored".into(),
                        ));
                    }
                    rechecks += 1;
                    p.present = stored.into_iter().collect();
                    continue;
                };
                let (a, b) = byte_range(run, r.chunk_size, r.size);
                (a, Some(b), Some(byte_range(end, r.chunk_size, r.size).1))
            }
        };
        let before = p.present.len();
        match fetch_run(&mut p, first, last, all_end, opts).await {
            Ok(()) => failures = 0,
            Err(e @ DownloadError::Network { .. }) => {
                if p.present.len() > before {
                    failures = 0;
                }
                if failures >= opts.retries {
                    return Err(e);
                }
                sleep(backoff_ms(failures, 500.0, 8000.0, js_sys::Math::random())).await;
                failures += 1;
            }
            Err(e) => return Err(e),
        }
    }
    let mut r = p
        .record
        .take()
        .ok_or_else(|| DownloadError::UnknownLength { url: url.into() })?;
    r.complete = true;
    db.put_file(&r).await.map_err(storage)?;
    Ok(r)
}

/// One no-store request with the caller's abort signal: the response, whatever its status; a
/// network failure (or the abort) is the error.
pub(crate) async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    opts: &Options<'_>,
) -> Result<Response, DownloadError> {
    let fail = |e| opts.network(url, e);
    let init = RequestInit::new();
    init.set_method(method);
    init.set_cache(web_sys::RequestCache::NoStore);
    if let Some(s) = &opts.signal {
        init.set_signal(Some(s));
    }
    let list = web_sys::Headers::new().map_err(fail)?;
    for (name, value) in headers {
        list.set(name, value).map_err(fail)?;
    }
    init.set_headers(&list);
    if let Some(body) = body {
        init.set_body(&JsValue::from_str(body));
    }
    let req = Request::new_with_str_and_init(url, &init).map_err(fail)?;
    Ok(JsFuture::from(fetch_request(&req))
        .await
        .map_err(fail)?
        .unchecked_into())
}

/// The next piece of a response body, or `None` at its end.
pub(crate) async fn next_piece(
    reader: &ReadableStreamDefaultReader,
    url: &str,
    opts: &Options<'_>,
) -> Result<Option<Uint8Array>, DownloadError> {
    let step = JsFuture::from(reader.read())
        .await
        .map_err(|e| opts.network(url, e))?;
    let done = Reflect::get(&step, &"done".into())
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    if done {
        return Ok(None);
    }
    Ok(Some(
        Reflect::get(&step, &"value".into())
            .map_err(|e| opts.network(url, e))?
            .unchecked_into(),
    ))
}

fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers().get(name).ok().flatten()
}

async fn check_quota(needed: u64) -> Result<(), DownloadError> {
    let global = js_sys::global();
    let storage = Reflect::get(&global, &"navigator".into())
        .and_then(|n| Reflect::get(&n, &"storage".into()));
    let Ok(storage) = storage.and_then(|s| s.dyn_into::<web_sys::StorageManager>()) else {
        return Ok(());
    };
    // Asked, not awaited: some browsers answer only after asking the user, and the download
    // should not wait on that.
    let _ = storage.persist();
    let Ok(estimate) = storage.estimate() else {
        return Ok(());
    };
    let estimate = JsFuture::from(estimate)
        .await
        .map_err(|e| DownloadError::Storage(format!("{e:?}")))?;
    let get = |k: &str| {
        Reflect::get(&estimate, &k.into())
            .ok()
            .and_then(|v| v.as_f64())
    };
    if let (Some(quota), Some(usage)) = (get("quota"), get("usage")) {
        let available = (quota - usage).max(0.0) as u64;
        if needed > available {
            return Err(DownloadError::Quota { needed, available });
        }
    }
    Ok(())
}

/// One request for bytes `first..=last` (`first` on a chunk boundary; no `last`: to the end).
/// `all_end` is the last byte still missing anywhere, kept from a full (non-Range) body.
async fn fetch_run(
    p: &mut Progress<'_>,
    first: u64,
    last: Option<u64>,
    all_end: Option<u64>,
    opts: &Options<'_>,
) -> Result<(), DownloadError> {
    let url = p.url;
    let range = match last {
        Some(l) => format!("bytes={first}-{l}"),
        None => format!("bytes={first}-"),
    };
    let resp = send("GET", url, &[("Range", &range)], None, opts).await?;

    let status = resp.status();
    let (start, total) = match status {
        206 => match header(&resp, "content-range")
            .as_deref()
            .and_then(parse_content_range)
        {
            Some((s, _, t)) => {
                check_range_start(url, first, s)?;
                (s, t)
            }
            None => {
                return Err(DownloadError::Network {
                    url: url.into(),
                    message: "206 without a readable Content-Range".into(),
                })
            }
        },
        200 => (
            0,
            header(&resp, "content-length").and_then(|v| v.trim().parse().ok()),
        ),
        s => {
            return Err(DownloadError::HttpStatus {
                url: url.into(),
                status: s,
            })
        }
    };
    let total = total.ok_or_else(|| DownloadError::UnknownLength { url: url.into() })?;
    // An ETag says whether the file changed, never what its hash is: a Xet-backed CDN sends 64
    // hex digits that are not the SHA-256. Only `X-Linked-Etag` is defined as the LFS SHA-256.
    let linked = header(&resp, "x-linked-etag");
    let etag = linked.clone().or_else(|| header(&resp, "etag"));
    let changed = p
        .record
        .as_ref()
        .is_some_and(|r| version_changed((r.size, r.etag.as_deref()), (total, etag.as_deref())));
    if changed {
        p.db.clear_chunks(url).await.map_err(storage)?;
        p.present.clear();
        p.record = None;
    }
    if p.record.is_none() {
        check_quota(total).await?;
        let r = FileRecord {
            url: url.into(),
            size: total,
            chunk_size: opts.chunk_size.max(1),
            sha256: p
                .sha256
                .map(String::from)
                .or_else(|| linked.as_deref().and_then(sha256_from_linked_etag)),
            etag,
            complete: false,
            verified: false,
            stored_at_ms: js_sys::Date::now(),
            generation: new_generation(),
        };
        p.db.put_file(&r).await.map_err(storage)?;
        p.record = Some(r);
        if changed && start != 0 {
            return Ok(()); // the file changed under a resumed download: start over from byte 0
        }
    } else {
        let missing = p.record.as_ref().map_or(0, |r| r.size) - p.stored_bytes();
        check_quota(missing).await?;
    }
    let (size, cs) = p
        .record
        .as_ref()
        .map(|r| (r.size, r.chunk_size))
        .unwrap_or((total, 1));
    let stop_at = match (status, last, all_end) {
        (206, Some(l), _) => l + 1,
        (200, _, Some(e)) => e + 1,
        _ => size,
    };

    let body = resp.body().ok_or_else(|| DownloadError::Network {
        url: url.into(),
        message: "response has no body".into(),
    })?;
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut pos = start;
    let mut buf: Option<(u64, Uint8Array, u64)> = None; // (chunk index, bytes, filled)
    while pos < stop_at {
        let Some(piece) = next_piece(&reader, url, opts).await? else {
            break;
        };
        let mut at = 0u32;
        while at < piece.length() && pos < stop_at {
            let index = pos / cs;
            let chunk_start = index * cs;
            let chunk_len = (size - chunk_start).min(cs);
            let within = pos - chunk_start;
            let n = ((piece.length() - at) as u64)
                .min(chunk_len - within)
                .min(stop_at - pos) as u32;
            if !p.present.contains(&index) {
                if within == 0 {
                    buf = Some((index, Uint8Array::new_with_length(chunk_len as u32), 0));
                }
                if let Some((i, bytes, filled)) =
                    buf.as_mut().filter(|(i, _, f)| *i == index && *f == within)
                {
                    bytes.set(&piece.subarray(at, at + n), within as u32);
                    *filled += n as u64;
                    if *filled == chunk_len {
                        let record = p.record.as_ref().expect("a record before any chunk");
                        p.db.put_record_chunk(record, *i, bytes)
                            .await
                            .map_err(storage)?;
                        p.present.insert(*i);
                        buf = None;
                        p.report(opts, 0);
                        // One network piece can hold the whole rest of the file: an abort
                        // stops at the next chunk, not at the end of the piece.
                        opts.check_abort()?;
                    }
                }
            }
            pos += n as u64;
            at += n;
        }
        let partial = buf.as_ref().map_or(0, |b| b.2);
        p.report(opts, partial);
        opts.check_abort()?;
    }
    if pos < stop_at {
        return Err(DownloadError::Network {
            url: url.into(),
            message: format!("connection closed at byte {pos} of {stop_at}"),
        });
    }
    let _ = reader.cancel();
    Ok(())
}
