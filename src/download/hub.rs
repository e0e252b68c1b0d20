//! Hugging Face hub URLs: which URLs are a hub file, where the hub says its SHA-256 is, and how
//! to read that answer.
//!
//! A `resolve` URL answers 302 to a signed CDN URL, and the SHA-256 (`X-Linked-Etag`) is on the
//! 302 only, which a browser's `fetch` never shows. The CDN's own `ETag` is no hash to trust: for
//! files stored on Xet it is 64 hex digits that are not the file's SHA-256. So the hash comes from
//! the hub's API (`paths-info`, its `lfs.oid`), or from the Git LFS pointer file at `raw/`, both
//! readable across origins. Downloads always start from the `resolve` URL, never from a CDN URL,
//! whose signature expires.

/// The hubs recognised without being named: Hugging Face's own hosts.
pub const HUB_HOSTS: [&str; 3] = ["huggingface.co", "hf.co", "www.huggingface.co"];

/// One file of a model repository on a hub, as its `resolve` URL names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFile {
    /// `https://huggingface.co`, or a mirror's origin.
    pub origin: String,
    /// `owner/name`.
    pub repo: String,
    /// A branch, tag or commit id, as written in the URL (percent-encoded).
    pub revision: String,
    /// The file's path in the repository (percent-encoded, `/` kept).
    pub path: String,
}

impl HubFile {
    /// `url` as a hub file: `{origin}/{owner}/{name}/resolve/{revision}/{path}` where the origin is
    /// one of [`HUB_HOSTS`] over https, or one of `mirrors` (origins such as
    /// `https://hf-mirror.com`, compared without a trailing slash). Query and fragment are
    /// dropped. None for any other URL.
    pub fn parse(url: &str, mirrors: &[String]) -> Option<HubFile> {
        let (scheme, rest) = url.split_once("://")?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let origin = format!("{}://{}", scheme.to_ascii_lowercase(), authority);
        let host = authority.rsplit('@').next()?.to_ascii_lowercase();
        let known = scheme.eq_ignore_ascii_case("https") && HUB_HOSTS.contains(&host.as_str());
        let mirrored = mirrors
            .iter()
            .any(|m| m.trim_end_matches('/').eq_ignore_ascii_case(&origin));
        if !known && !mirrored {
            return None;
        }
        let path = tail.split(['?', '#']).next().unwrap_or("");
        let mut parts = path.trim_start_matches('/').splitn(5, '/');
        let (owner, name, verb, revision, file) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        let plain = |s: &str| !s.is_empty() && s != "." && s != "..";
        if verb != "resolve" || ![owner, name, revision].iter().all(|s| plain(s)) {
            return None;
        }
        if file.is_empty() || !file.split('/').all(plain) {
            return None;
        }
        Some(HubFile {
            origin,
            repo: format!("{owner}/{name}"),
            revision: revision.into(),
            path: file.into(),
        })
    }

    /// The API call that describes this file: POST it [`HubFile::paths_info_body`].
    pub fn paths_info_url(&self) -> String {
        format!(
            "{}/api/models/{}/paths-info/{}",
            self.origin, self.repo, self.revision
        )
    }

    /// The form body for [`HubFile::paths_info_url`] (`application/x-www-form-urlencoded`, a
    /// request a browser sends across origins without a preflight).
    pub fn paths_info_body(&self) -> String {
        format!("paths={}&expand=true", form_encode(&decode(&self.path)))
    }

    /// The Git LFS pointer file of this file.
    pub fn raw_url(&self) -> String {
        format!(
            "{}/{}/raw/{}/{}",
            self.origin, self.repo, self.revision, self.path
        )
    }
}

/// What the hub says of a file now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HubFacts {
    /// The file's SHA-256 (lower-case hex), for files kept in LFS or Xet.
    pub sha256: Option<String>,
    pub size: Option<u64>,
    /// The last commit that touched the file, where the hub said.
    pub commit: Option<String>,
}

/// The facts for `path` in a `paths-info` answer (a JSON array of entries); None when the answer
/// is not such an array or does not hold the file.
pub fn parse_paths_info(json: &str, path: &str) -> Option<HubFacts> {
    let entries: Vec<serde_json::Value> = serde_json::from_str(json).ok()?;
    let path = decode(path);
    let entry = entries.iter().find(|e| e["path"].as_str() == Some(&path))?;
    let lfs = &entry["lfs"];
    Some(HubFacts {
        sha256: lfs["oid"].as_str().and_then(sha256_hex),
        size: lfs["size"].as_u64().or_else(|| entry["size"].as_u64()),
        commit: entry["lastCommit"]["id"].as_str().map(String::from),
    })
}

/// The SHA-256 and size in a Git LFS pointer file; None for anything else (a file not kept in
/// LFS is served by `raw/` as itself).
pub fn parse_lfs_pointer(text: &str) -> Option<HubFacts> {
    if text.len() > 1024 || !text.starts_with("version https://git-lfs.github.com/spec/") {
        return None;
    }
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).map(str::trim))
    };
    Some(HubFacts {
        sha256: Some(sha256_hex(field("oid sha256:")?)?),
        size: field("size ").and_then(|s| s.parse().ok()),
        commit: None,
    })
}

/// `s` as a SHA-256: 64 hex digits, lower-cased.
fn sha256_hex(s: &str) -> Option<String> {
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// Percent-decoding of a URL path (invalid escapes kept as written).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn hub_urls_are_recognised_and_others_are_not() {
        let f = HubFile::parse(
            "https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q4_k_m.gguf?download=true",
            &[],
        )
        .unwrap();
        assert_eq!(f.origin, "https://huggingface.co");
        assert_eq!(f.repo, "Qwen/Qwen2.5-0.5B-Instruct-GGUF");
        assert_eq!(f.revision, "main");
        assert_eq!(f.path, "qwen2.5-0.5b-instruct-q4_k_m.gguf");
        assert_eq!(
            f.paths_info_url(),
            "https://huggingface.co/api/models/Qwen/Qwen2.5-0.5B-Instruct-GGUF/paths-info/main"
        );
        assert_eq!(
            f.raw_url(),
            "https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/raw/main/qwen2.5-0.5b-instruct-q4_k_m.gguf"
        );
        let nested = HubFile::parse("https://hf.co/a/b/resolve/0123abcd/sub%20dir/x+y.gguf", &[]);
        assert_eq!(nested.as_ref().unwrap().path, "sub%20dir/x+y.gguf");
        assert_eq!(
            nested.unwrap().paths_info_body(),
            "paths=sub+dir%2Fx%2By.gguf&expand=true"
        );

        let mirror = vec!["http://127.0.0.1:9000/".to_string()];
        assert!(HubFile::parse("http://127.0.0.1:9000/o/n/resolve/main/f.gguf", &mirror).is_some());
        for other in [
            "http://huggingface.co/o/n/resolve/main/f.gguf",
            "https://huggingface.co.evil.example/o/n/resolve/main/f.gguf",
            "https://evil.example/huggingface.co/o/n/resolve/main/f.gguf",
            "https://huggingface.co/o/n/blob/main/f.gguf",
            "https://huggingface.co/o/n/resolve/main/",
            "https://huggingface.co/o/n/resolve/main/../../x",
            "https://huggingface.co/o/resolve/main",
            "http://127.0.0.1:9001/o/n/resolve/main/f.gguf",
            "/models/f.gguf",
        ] {
            assert_eq!(HubFile::parse(other, &mirror), None, "{other}");
        }
    }

    #[test]
    fn the_sha256_is_read_from_paths_info_and_from_the_pointer_file() {
        let info = format!(
            r#"[{{"type":"file","oid":"abc","size":5,"path":"other.gguf"}},
               {{"type":"file","oid":"def","size":7,"path":"sub dir/m.gguf",
                 "lfs":{{"oid":"{}","size":7,"pointerSize":130}},"xetHash":"{}",
                 "lastCommit":{{"id":"c0ffee","title":"t","date":"d"}}}}]"#,
            SHA.to_uppercase(),
            "1".repeat(64)
        );
        assert_eq!(
            parse_paths_info(&info, "sub%20dir/m.gguf"),
            Some(HubFacts {
                sha256: Some(SHA.into()),
                size: Some(7),
                commit: Some("c0ffee".into())
            })
        );
        let plain = parse_paths_info(&info, "other.gguf").unwrap();
        assert_eq!(
            (plain.sha256, plain.size),
            (None, Some(5)),
            "not in LFS: no hash"
        );
        assert_eq!(parse_paths_info(&info, "missing.gguf"), None);
        assert_eq!(parse_paths_info(r#"{"error":"x"}"#, "m.gguf"), None);

        let pointer =
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{SHA}\nsize 1234\n");
        let facts = parse_lfs_pointer(&pointer).unwrap();
        assert_eq!(
            (facts.sha256.as_deref(), facts.size),
            (Some(SHA), Some(1234))
        );
        assert_eq!(parse_lfs_pointer("GGUF\x03\0\0\0"), None);
        assert_eq!(
            parse_lfs_pointer("version https://git-lfs.github.com/spec/v1\noid sha256:abc\n"),
            None
        );
    }
}
