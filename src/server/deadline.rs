//! The `grpc-timeout` request header, read by the server so a deadline covers a whole stream
//! (tonic's own timeout ends when the first response is ready).

use std::time::Duration;
use tokio::time::Instant;
use tonic::metadata::MetadataMap;
use tonic::Status;

/// When the request's deadline passes, if it has one.
pub fn from_metadata(metadata: &MetadataMap) -> Result<Option<Instant>, Status> {
    let Some(value) = metadata.get("grpc-timeout") else {
        return Ok(None);
    };
    let timeout = value
        .to_str()
        .ok()
        .and_then(parse_timeout)
        .ok_or_else(|| Status::invalid_argument("malformed grpc-timeout header"))?;
    // A timeout too far away to represent is no deadline at all.
    Ok(Instant::now().checked_add(timeout))
}

/// `TimeoutValue TimeoutUnit`: at most 8 ASCII digits, then one of H M S m u n.
fn parse_timeout(s: &str) -> Option<Duration> {
    if !s.is_ascii() {
        return None;
    }
    let (digits, unit) = s.split_at(s.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_timeout;
    use std::time::Duration;

    #[test]
    fn parses_every_unit_and_rejects_junk() {
        assert_eq!(parse_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_timeout("10S"), Some(Duration::from_secs(10)));
        assert_eq!(parse_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(
            parse_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "S", "123456789S", "10x", "-1S", "1.5S", "é"] {
            assert_eq!(parse_timeout(bad), None, "{bad}");
        }
    }
}
