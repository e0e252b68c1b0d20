//! The router answers JSON `fetch`es from its own origin and from origins the app allows; page
//! loads and form submissions (the way another site could spend the user's provider key) and
//! other sites' requests are refused with a typed error.

use candlelight::router::{check_caller, Caller, RouterConfig};

const OWN: &str = "https://app.example";

fn caller<'a>(
    mode: &'a str,
    ct: Option<&'a str>,
    site: Option<&'a str>,
    origin: Option<&'a str>,
) -> Caller<'a> {
    Caller {
        mode,
        content_type: ct,
        fetch_site: site,
        origin,
        own_origin: OWN,
    }
}

fn code(c: &Caller, allowed: &[String]) -> Option<&'static str> {
    check_caller(c, allowed).err().map(|r| r.code)
}

#[test]
fn own_pages_json_fetches_pass() {
    let json = Some("application/json");
    for c in [
        caller("cors", json, Some("same-origin"), Some(OWN)),
        caller(
            "same-origin",
            Some("Application/JSON; charset=utf-8"),
            None,
            None,
        ),
        caller("cors", json, None, Some(OWN)),
    ] {
        assert_eq!(code(&c, &[]), None, "{c:?}");
    }
}

#[test]
fn forms_navigations_and_other_sites_are_refused() {
    let json = Some("application/json");
    // The attack: another site's <form enctype=text/plain method=post> navigating here.
    let form = caller(
        "navigate",
        Some("text/plain"),
        Some("cross-site"),
        Some("https://evil.example"),
    );
    let refused = check_caller(&form, &[]).unwrap_err();
    assert_eq!((refused.status, refused.code), (403, "navigation_refused"));
    assert_eq!(refused.body()["error"]["code"], "navigation_refused");
    // Even a same-origin navigation is no API call.
    assert_eq!(
        code(
            &caller("navigate", json, Some("same-origin"), Some(OWN)),
            &[]
        ),
        Some("navigation_refused")
    );
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        assert_eq!(
            code(&caller("cors", ct, Some("same-origin"), Some(OWN)), &[]),
            Some("unsupported_media_type"),
            "{ct:?}"
        );
    }
    for (site, origin) in [
        (Some("cross-site"), Some("https://evil.example")),
        (Some("same-site"), Some("https://sub.app.example")),
        (None, Some("https://evil.example")),
        (Some("cross-site"), None),
    ] {
        assert_eq!(
            code(&caller("cors", json, site, origin), &[]),
            Some("origin_refused"),
            "{site:?} {origin:?}"
        );
    }
}

#[test]
fn the_app_allows_other_origins_by_name() {
    let config: RouterConfig = serde_json::from_value(serde_json::json!({
        "allowedOrigins": ["https://partner.example/"]
    }))
    .unwrap();
    let json = Some("application/json");
    let partner = caller(
        "cors",
        json,
        Some("cross-site"),
        Some("https://partner.example"),
    );
    assert_eq!(code(&partner, &config.allowed_origins), None);
    let other = caller(
        "cors",
        json,
        Some("cross-site"),
        Some("https://partner.example.evil"),
    );
    assert_eq!(
        code(&other, &config.allowed_origins),
        Some("origin_refused")
    );
    // Allowing an origin does not let its forms in.
    let form = caller(
        "navigate",
        Some("text/plain"),
        Some("cross-site"),
        Some("https://partner.example"),
    );
    assert_eq!(
        code(&form, &config.allowed_origins),
        Some("navigation_refused")
    );
}
