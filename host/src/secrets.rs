//! Secrets scrubbed by value. Redacting URLs is not enough: a server may echo a request's
//! headers in its error body, and an error may quote a value anywhere. Every secret the run
//! is configured with is registered here, and every message is scrubbed before it is logged,
//! printed or stored.

use std::borrow::Cow;
use std::sync::RwLock;

/// Shorter values are not scrubbed: they would blank out ordinary words.
const MIN_SECRET_LEN: usize = 6;
const MASK: &str = "***";

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers a secret (an API key, a token, a password, a presigned signature) for the rest
/// of the process. Registering the same value twice is harmless.
pub fn register(secret: &str) {
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|poison| poison.into_inner());
    if !secrets.iter().any(|known| known == secret) {
        secrets.push(secret.to_owned());
        // Longest first, so that a secret containing another is masked whole.
        secrets.sort_by_key(|known| std::cmp::Reverse(known.len()));
    }
}

/// Registers the secret parts of a URL: its password and the values of its query (a
/// presigned URL's signature and credential).
pub fn register_url(url: &str) {
    if let Some((_, rest)) = url.split_once("://")
        && let Some(at) = rest.rfind('@')
        && let Some((_, password)) = rest[..at].split_once(':')
    {
        register_encoded(password);
    }
    if let Some((_, query)) = url.split_once('?') {
        for pair in query.split(['&', '#']) {
            if let Some((name, value)) = pair.split_once('=') {
                register_encoded(value);
                // S3's errors quote the access key id of `KEY/date/region/s3/aws4_request` alone.
                if name == "X-Amz-Credential"
                    && let Some((key_id, _)) = value.split_once("%2F")
                {
                    register(key_id);
                }
            }
        }
    }
}

/// A value as the URL carries it and as a server quotes it back, decoded: an S3 error quotes
/// `X-Amz-Credential` with its `/` where the URL has `%2F`.
fn register_encoded(value: &str) {
    register(value);
    if let Ok(decoded) = percent_encoding::percent_decode_str(value).decode_utf8() {
        register(&decoded);
    }
}

/// `text` with every registered secret masked.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|poison| poison.into_inner());
    let mut scrubbed = Cow::Borrowed(text);
    for secret in secrets.iter() {
        if scrubbed.contains(secret.as_str()) {
            scrubbed = Cow::Owned(scrubbed.replace(secret.as_str(), MASK));
        }
    }
    scrubbed
}

/// Formats an error with its whole chain, as `{:#}` does for anyhow, with every configured
/// secret scrubbed. A cause that an error already quotes in its own message is said once.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    scrub(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_are_masked_wherever_they_appear() {
        register("echoed-api-key-123");
        register("short"); // too short to be told from a word: left alone
        register_url("mysql://job:pa55%3Fw0rd@db:3306/raw");
        register_url(
            "https://bucket/docs.json?X-Amz-Signature=deadbeefcafe&X-Amz-Expires=300&X-Amz-Credential=AKIAEXAMPLE%2F20261203%2Fus-east-1%2Fs3%2Faws4_request",
        );
        let text = "500: headers {x-api-key: echoed-api-key-123}, password pa55?w0rd, sig deadbeefcafe, short";
        assert_eq!(
            scrub(text),
            "500: headers {x-api-key: ***}, password ***, sig ***, short"
        );
        // Quoted back decoded, as S3 does, or as the URL has it.
        assert_eq!(
            scrub(
                "<Credential>AKIAEXAMPLE/20261203/us-east-1/s3/aws4_request</Credential> AKIAEXAMPLE%2F20261203%2Fus-east-1%2Fs3%2Faws4_request <AWSAccessKeyId>AKIAEXAMPLE</AWSAccessKeyId>"
            ),
            "<Credential>***</Credential> *** <AWSAccessKeyId>***</AWSAccessKeyId>"
        );
        assert!(matches!(scrub("nothing secret"), Cow::Borrowed(_)));
    }
}
