//! What a server says of a model file without sending it: a hub's SHA-256 for the file (its API,
//! else the Git LFS pointer), and whether the stored copy is still the current one.

use serde::Serialize;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Request, RequestInit, Response};

use super::fetch::{fetch_request, Options};
use super::hub::{parse_lfs_pointer, parse_paths_info, HubFacts, HubFile};
use super::DownloadError;
use crate::store::indexed_db::ModelDb;

/// Answers larger than this are not a `paths-info` entry or a pointer file: not read.
const MAX_ANSWER: usize = 1 << 20;

/// One request, answered with its status, headers and (small) text; a network failure is an
/// error, an HTTP status is not.
async fn ask(
    method: &str,
    url: &str,
    form: Option<&str>,
    opts: &Options<'_>,
) -> Result<(Response, Option<String>), DownloadError> {
    let init = RequestInit::new();
    init.set_method(method);
    init.set_cache(web_sys::RequestCache::NoStore);
    if let Some(s) = &opts.signal {
        init.set_signal(Some(s));
    }
    let fail = |e| opts.network(url, e);
    if let Some(body) = form {
        let headers = web_sys::Headers::new().map_err(fail)?;
        headers
            .set("Content-Type", "application/x-www-form-urlencoded")
            .map_err(fail)?;
        init.set_headers(&headers);
        init.set_body(&body.into());
    }
    let req = Request::new_with_str_and_init(url, &init).map_err(fail)?;
    let resp: Response = JsFuture::from(fetch_request(&req))
        .await
        .map_err(fail)?
        .unchecked_into();
    if method == "HEAD" || !resp.ok() {
        return Ok((resp, None));
    }
    let long = resp
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| n > MAX_ANSWER);
    if long {
        return Ok((resp, None));
    }
    let text = JsFuture::from(resp.text().map_err(fail)?)
        .await
        .map_err(fail)?
        .as_string()
        .filter(|t| t.len() <= MAX_ANSWER);
    Ok((resp, text))
}

/// What the hub says of `hub` now: from `paths-info`, else from the LFS pointer file. None when
/// neither answers with a hash (a file not in LFS, an API that refuses): the download then goes
/// on, unverified as a whole, each chunk still checked against its own hash.
pub async fn hub_facts(
    hub: &HubFile,
    opts: &Options<'_>,
) -> Result<Option<HubFacts>, DownloadError> {
    let info = ask(
        "POST",
        &hub.paths_info_url(),
        Some(&hub.paths_info_body()),
        opts,
    )
    .await;
    if let Err(DownloadError::Aborted) = info {
        return Err(DownloadError::Aborted);
    }
    let from_api = info
        .ok()
        .and_then(|(_, text)| text)
        .and_then(|t| parse_paths_info(&t, &hub.path))
        .filter(|f| f.sha256.is_some());
    if from_api.is_some() {
        return Ok(from_api);
    }
    let pointer = ask("GET", &hub.raw_url(), None, opts).await;
    if let Err(DownloadError::Aborted) = pointer {
        return Err(DownloadError::Aborted);
    }
    Ok(pointer
        .ok()
        .and_then(|(_, text)| text)
        .and_then(|t| parse_lfs_pointer(&t)))
}

/// One version of a file, as far as it is known.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    pub sha256: Option<String>,
    pub etag: Option<String>,
    pub size: Option<u64>,
    /// The hub's last commit touching the file (the current version only).
    pub commit: Option<String>,
}

/// The stored copy of a file against the server's current one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateCheck {
    pub url: String,
    /// None when nothing of the file is stored.
    pub stored: Option<Version>,
    pub current: Version,
    /// The server has another version than the stored one.
    pub update_available: bool,
}

/// Compares the stored copy of `url` with what its server has now, downloading nothing: a hub's
/// SHA-256 where both sides have one, else the ETag and the size from a HEAD request.
pub async fn check_for_update(
    db: &ModelDb,
    url: &str,
    opts: &Options<'_>,
) -> Result<UpdateCheck, DownloadError> {
    let record = db
        .file(url)
        .await
        .map_err(|e| DownloadError::Storage(e.to_string()))?;
    let stored = record.as_ref().map(|r| Version {
        sha256: r.sha256.clone(),
        etag: r.etag.clone(),
        size: Some(r.size),
        commit: None,
    });
    let mut current = Version::default();
    if let Some(hub) = HubFile::parse(url, &opts.hub_mirrors) {
        if let Some(f) = hub_facts(&hub, opts).await? {
            current.sha256 = f.sha256;
            current.size = f.size;
            current.commit = f.commit;
        }
    }
    let by_hash = matches!(
        (&stored, &current.sha256),
        (
            Some(Version {
                sha256: Some(_),
                ..
            }),
            Some(_)
        )
    );
    if !by_hash {
        let (resp, _) = ask("HEAD", url, None, opts).await?;
        if !resp.ok() {
            return Err(DownloadError::HttpStatus {
                url: url.into(),
                status: resp.status(),
            });
        }
        let header = |name: &str| resp.headers().get(name).ok().flatten();
        current.etag = header("x-linked-etag").or_else(|| header("etag"));
        current.size = current
            .size
            .or_else(|| header("content-length").and_then(|v| v.trim().parse().ok()));
    }
    let update_available = match &stored {
        None => false,
        Some(s) if by_hash => s.sha256 != current.sha256,
        Some(s) => {
            (s.etag.is_some() && current.etag.is_some() && s.etag != current.etag)
                || (current.size.is_some() && s.size != current.size)
        }
    };
    Ok(UpdateCheck {
        url: url.into(),
        stored,
        current,
        update_available,
    })
}
