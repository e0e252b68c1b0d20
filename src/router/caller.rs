//! Who may ask the router: a service worker answers any request its origin's pages make, and
//! also top-level navigations from anywhere, so a cross-site `<form enctype=text/plain>` POST
//! would otherwise spend the user's provider key. The router takes JSON `fetch`es from its own
//! origin, and from the other origins the app names.

/// What the service worker knows of one request's caller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Caller<'a> {
    /// `Request.mode`: `navigate` for a page load or form submission.
    pub mode: &'a str,
    /// The `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// The `Sec-Fetch-Site` header, where the browser shows it.
    pub fetch_site: Option<&'a str>,
    /// The `Origin` header.
    pub origin: Option<&'a str>,
    /// The router's own origin.
    pub own_origin: &'a str,
}

/// Why a caller is turned away: the HTTP status, the error code and a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Refused {
    /// The OpenAI-shaped error body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"message": self.message, "type": "invalid_request_error",
            "param": null, "code": self.code}})
    }
}

/// Turns away navigations, bodies that are not JSON, and other sites' requests unless their
/// origin is in `allowed`.
pub fn check_caller(caller: &Caller, allowed: &[String]) -> Result<(), Refused> {
    let refuse = |status, code, message: String| {
        Err(Refused {
            status,
            code,
            message,
        })
    };
    if caller.mode == "navigate" {
        return refuse(
            403,
            "navigation_refused",
            "the router answers fetch() calls, not page loads or form submissions".into(),
        );
    }
    let media = caller
        .content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    if media.as_deref() != Some("application/json") {
        return refuse(
            415,
            "unsupported_media_type",
            "the request body must be sent as content-type: application/json".into(),
        );
    }
    let own = caller.origin.is_none_or(|o| o == caller.own_origin);
    let allowed_origin = caller
        .origin
        .is_some_and(|o| allowed.iter().any(|a| a.trim_end_matches('/') == o));
    let same_site = caller.fetch_site.is_none_or(|s| s == "same-origin");
    if !(allowed_origin || (own && same_site)) {
        return refuse(
            403,
            "origin_refused",
            format!(
                "requests from {} are refused; the app may allow an origin in allowedOrigins",
                caller.origin.unwrap_or("another site")
            ),
        );
    }
    Ok(())
}
