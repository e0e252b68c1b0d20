//! How long to wait before trying again: exponential backoff with full jitter, and the server's
//! own `Retry-After`. Shared by the download (a cut connection) and the router (a busy provider).

/// Waits between tries: exponential from `base_ms`, capped, with full jitter from `unit` in [0, 1).
pub fn backoff_ms(attempt: u32, base_ms: f64, cap_ms: f64, unit: f64) -> f64 {
    let ceiling = (base_ms * 2f64.powi(attempt.min(30) as i32)).min(cap_ms);
    ceiling * unit.clamp(0.0, 1.0)
}

/// A `Retry-After` value in milliseconds from `now_ms` (Unix ms): delay-seconds or an HTTP date.
/// None when it is neither; a date in the past is 0.
pub fn retry_after_ms(value: &str, now_ms: f64) -> Option<f64> {
    let v = value.trim();
    if let Ok(seconds) = v.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then_some(seconds * 1000.0);
    }
    http_date_ms(v).map(|at| (at - now_ms).max(0.0))
}

/// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") as Unix milliseconds.
fn http_date_ms(v: &str) -> Option<f64> {
    let parts: Vec<&str> = v.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months.iter().position(|m| m == month)? as i64 + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || *h > 23 || *m > 59 || *s > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + m * 60 + s) * 1000) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_full_jitter() {
        assert_eq!(backoff_ms(0, 500.0, 8000.0, 0.999_999).round(), 500.0);
        assert_eq!(backoff_ms(3, 500.0, 8000.0, 0.5), 2000.0);
        assert_eq!(backoff_ms(40, 500.0, 8000.0, 1.0), 8000.0);
        assert_eq!(backoff_ms(2, 500.0, 8000.0, 0.0), 0.0);
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(retry_after_ms("7", 0.0), Some(7000.0));
        assert_eq!(retry_after_ms(" 1.5 ", 0.0), Some(1500.0));
        assert_eq!(retry_after_ms("-1", 0.0), None);
        assert_eq!(retry_after_ms("soon", 0.0), None);
        // RFC 9110's example date is 784111777 s after the epoch.
        let at = 784_111_777_000.0;
        assert_eq!(
            retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", at - 3000.0),
            Some(3000.0)
        );
        assert_eq!(
            retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", at + 5000.0),
            Some(0.0)
        );
        assert_eq!(retry_after_ms("Sun, 06 Foo 1994 08:49:37 GMT", 0.0), None);
    }
}
