//! What a provider's answer means for routing: busy (retry, then fail over), a refused key
//! (rotate), a failure that is not busy (fail over), or the client's own mistake (answer it).

/// What happened to one try.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal<'a> {
    /// An HTTP answer: status, body (or its start) and the parsed Retry-After.
    Http {
        status: u16,
        body: &'a str,
        retry_after_ms: Option<f64>,
    },
    /// The connection was refused or could not be made before the connect deadline.
    Refused,
    /// The connection dropped mid-answer.
    Cut,
    /// No first byte before the deadline.
    NoFirstByte,
    /// A stream fell silent for longer than the stall deadline.
    Stalled,
    /// The answer was not the API's shape (bad JSON, bad SSE).
    Malformed,
}

/// The routing meaning of a [`Signal`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Ok,
    /// Try again later, here or elsewhere; the provider's Retry-After when it gave one.
    Busy {
        retry_after_ms: Option<f64>,
    },
    /// The key was refused or is out of quota: the next key, then the next provider.
    KeyRejected {
        why: Refusal,
    },
    /// The route failed without being busy: fail over, and count it against the provider.
    Failed,
    /// The request itself is wrong (400, 404, 413, 422…): every route would say the same.
    ClientError,
    /// A valid request this route cannot answer (the local model and `tools` without a tool
    /// template, `n` above 1): another route may.
    Unsupported,
}

/// Why a key was refused, which decides how long it sits out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401: the key is wrong or revoked; it stays out.
    Invalid,
    /// 403: forbidden for now (a region, a model, an organisation setting); back after a
    /// cool-down, since such refusals lift.
    Forbidden,
    /// Out of balance or quota (402, a 429 that says so); back after an hour.
    Quota,
}

/// Phrases of "server busy" and quota bodies: DeepSeek's, OpenAI's, and common proxies'.
const BUSY_WORDS: [&str; 6] = [
    "server busy",
    "server is busy",
    "overloaded",
    "too many requests",
    "try again later",
    "capacity",
];
const QUOTA_WORDS: [&str; 5] = [
    "insufficient_quota",
    "insufficient balance",
    "quota",
    "billing",
    "balance",
];

fn mentions(body: &str, words: &[&str]) -> bool {
    let lower = body.to_ascii_lowercase();
    words.iter().any(|w| lower.contains(w))
}

/// `error.code` of an OpenAI-shaped error body.
fn error_code(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["error"]["code"].as_str().map(str::to_string)
}

pub fn classify(signal: &Signal) -> Verdict {
    match *signal {
        Signal::Http {
            status,
            body,
            retry_after_ms,
        } => match status {
            200..=299
                if mentions(body, &BUSY_WORDS) && body.trim_start().starts_with("{\"error\"") =>
            {
                Verdict::Busy { retry_after_ms }
            }
            200..=299 => Verdict::Ok,
            401 => Verdict::KeyRejected {
                why: Refusal::Invalid,
            },
            403 => Verdict::KeyRejected {
                why: Refusal::Forbidden,
            },
            // DeepSeek: 402 Insufficient Balance.
            402 => Verdict::KeyRejected {
                why: Refusal::Quota,
            },
            429 if mentions(body, &QUOTA_WORDS) => Verdict::KeyRejected {
                why: Refusal::Quota,
            },
            429 | 500 | 502 | 503 | 504 => Verdict::Busy { retry_after_ms },
            // Anthropic-style "overloaded" and other 5xx that say so.
            500..=599 if mentions(body, &BUSY_WORDS) => Verdict::Busy { retry_after_ms },
            500..=599 => Verdict::Failed,
            408 => Verdict::Busy { retry_after_ms },
            400 if error_code(body).as_deref() == Some("unsupported_feature") => {
                Verdict::Unsupported
            }
            400..=499 => Verdict::ClientError,
            _ => Verdict::Failed,
        },
        Signal::Refused | Signal::Cut | Signal::NoFirstByte | Signal::Stalled => Verdict::Busy {
            retry_after_ms: None,
        },
        Signal::Malformed => Verdict::Failed,
    }
}
