//! What a server says of a model file without sending it: a hub's SHA-256 for the file (its API,
//! else the Git LFS pointer), and whether the stored copy is still the current one.

use serde::Serialize;
use wasm_bindgen::JsCast;
use web_sys::{ReadableStreamDefaultReader, Response};

use super::fetch::{next_piece, send, Options};
use super::hub::{parse_lfs_pointer, parse_paths_info, HubFacts, HubFile};
use super::{version_changed, DownloadError};
use crate::store::indexed_db::ModelDb;

/// Answers larger than this are not a `paths-info` entry or a pointer file: not read.
const MAX_ANSWER: usize = 1 << 20;

/// One request, answered with its status, headers and text when that is short (a `paths-info`
/// entry or a pointer file is small; a longer body is not read past `MAX_ANSWER`, whatever its
/// headers claim); a network failure is an error, an HTTP status is not.
async fn ask(
    method: &str,
    url: &str,
    form: Option<&str>,
    opts: &Options<'_>,
) -> Result<(Response, Option<String>), DownloadError> {
    let headers: &[(&str, &str)] = match form {
        Some(_) => &[("Content-Type", "application/x-www-form-urlencoded")],
        None => &[],
    };
    let resp = send(method, url, headers, form, opts).await?;
    if method == "HEAD" || !resp.ok() {
        return Ok((resp, None));
    }
    let Some(body) = resp.body() else {
        return Ok((resp, Some(String::new())));
    };
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut bytes = Vec::new();
    while let Some(piece) = next_piece(&reader, url, opts).await? {
        if bytes.len() + piece.length() as usize > MAX_ANSWER {
            let _ = reader.cancel();
            return Ok((resp, None));
        }
        bytes.extend_from_slice(&piece.to_vec());
    }
    Ok((resp, String::from_utf8(bytes).ok()))
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
        Some(s) => match (s.size, current.size) {
            (Some(a), Some(b)) => {
                version_changed((a, s.etag.as_deref()), (b, current.etag.as_deref()))
            }
            _ => version_changed((0, s.etag.as_deref()), (0, current.etag.as_deref())),
        },
    };
    Ok(UpdateCheck {
        url: url.into(),
        stored,
        current,
        update_available,
    })
}
