//! Request authentication: the RPC signature (HMAC-SHA1, `SignatureVersion=1.0`) of the old
//! SDK and the V3 signature (`ACS3-HMAC-SHA256`) of the new one, a timestamp window and
//! `SignatureNonce` replay protection.
//!
//! The string-to-sign functions are pure and tested against Alibaba's published vector; the
//! server recomputes the signature over exactly what it received (every parameter but
//! `Signature`, including the empty `SignatureType=` the old SDK signs; for V3 the headers the
//! client listed in `SignedHeaders`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Digest;

use crate::error::{Result, ServerError};
use crate::wire::Params;

/// Requests whose timestamp is further than this from the server's clock are refused.
pub const TIMESTAMP_WINDOW: Duration = Duration::from_secs(15 * 60);

/// RFC 3986 percent-encoding as Alibaba's signatures use it: unreserved characters
/// (`A-Z a-z 0-9 - _ . ~`) stay, every other byte of the UTF-8 becomes `%XX` (upper case).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The RPC (V1) string to sign: `METHOD&%2F&` + the encoded, sorted, encoded parameters.
pub fn v1_string_to_sign(method: &str, params: &BTreeMap<String, String>) -> String {
    let canonical: Vec<String> = params
        .iter()
        .filter(|(k, _)| k.as_str() != "Signature")
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    // BTreeMap orders by byte order of the raw keys; encoded keys sort the same way for the
    // ASCII names ECS uses.
    format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&canonical.join("&"))
    )
}

/// `Base64(HMAC-SHA1(secret + "&", string_to_sign))`.
pub fn v1_signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(format!("{secret}&").as_bytes())
        .expect("any key length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The client side of the RPC signature: a signed query string for `params` (which may
/// override the defaults: `Version=2014-05-26`, `RegionId=cn-hangzhou`, `Format=JSON`), with a
/// fresh nonce and the current time, as the old SDK builds it. Used by the tests and the load
/// generator, and by Stockade's own clients.
pub fn signed_v1_query(
    method: &str,
    access_key_id: &str,
    secret: &str,
    params: impl IntoIterator<Item = (String, String)>,
) -> String {
    let mut p: BTreeMap<String, String> = [
        ("AccessKeyId", access_key_id),
        ("Format", "JSON"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureType", ""),
        ("Version", "2014-05-26"),
        ("RegionId", "cn-hangzhou"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    p.insert("SignatureNonce".into(), uuid::Uuid::new_v4().to_string());
    p.insert(
        "Timestamp".into(),
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    );
    p.extend(params);
    let sts = v1_string_to_sign(method, &p);
    p.insert("Signature".into(), v1_signature(secret, &sts));
    p.iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The parts of an `Authorization: ACS3-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3Authorization {
    /// The AccessKeyId.
    pub credential: String,
    /// Lower-case header names, in the order given.
    pub signed_headers: Vec<String>,
    /// Hex signature.
    pub signature: String,
}

/// Parses the `Authorization` header of a V3 request.
pub fn parse_v3_authorization(value: &str) -> Option<V3Authorization> {
    let rest = value.strip_prefix("ACS3-HMAC-SHA256")?.trim();
    let mut fields = HashMap::new();
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        fields.insert(k.trim(), v.trim());
    }
    Some(V3Authorization {
        credential: fields.get("Credential")?.to_string(),
        signed_headers: fields
            .get("SignedHeaders")?
            .split(';')
            .map(|h| h.trim().to_ascii_lowercase())
            .collect(),
        signature: fields.get("Signature")?.to_string(),
    })
}

/// Headers a V3 signature must cover. Unsigned, any of them could be changed under a
/// captured signature: another action or version, a fresh date and nonce (a replay), another
/// body, another host.
pub const V3_SIGNED_HEADERS: [&str; 6] = [
    "host",
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
];

/// Refuses a V3 `SignedHeaders` list that leaves out a header of [`V3_SIGNED_HEADERS`] or
/// names an empty one.
pub fn check_v3_signed_headers(signed: &[String]) -> Result<()> {
    if signed.iter().any(String::is_empty) {
        return Err(ServerError::HeaderNotSigned(String::new()));
    }
    match V3_SIGNED_HEADERS
        .iter()
        .find(|required| !signed.iter().any(|h| h == *required))
    {
        Some(missing) => Err(ServerError::HeaderNotSigned(missing.to_string())),
        None => Ok(()),
    }
}

/// Refuses a V1 request whose signature parameters are not those of the AccessKey RPC
/// signature: `SignatureMethod=HMAC-SHA1`, `SignatureVersion=1.0`, and no `SignatureType`
/// (the old SDK sends it empty).
pub fn check_v1_parameters(params: &Params) -> Result<()> {
    let method = params.required("SignatureMethod")?;
    if method != "HMAC-SHA1" {
        return Err(ServerError::SignatureMethodNotSupported(method));
    }
    let version = params.required("SignatureVersion")?;
    if version != "1.0" {
        return Err(ServerError::SignatureVersionNotSupported(version));
    }
    match params.opt("SignatureType") {
        Some(t) => Err(ServerError::SignatureTypeNotSupported(t)),
        None => Ok(()),
    }
}

/// The V3 canonical request and string to sign.
pub fn v3_string_to_sign(
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    signed_headers: &[String],
    payload_hash: &str,
) -> String {
    let mut q: Vec<(String, String)> = query.to_vec();
    q.sort();
    let canonical_query: Vec<String> = q
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    let mut names: Vec<&String> = signed_headers.iter().collect();
    names.sort();
    names.dedup();
    let mut canonical_headers = String::new();
    for name in &names {
        let mut values: Vec<String> = headers
            .get_all(name.as_str())
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
            .collect();
        values.sort();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let signed: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let canonical_request = format!(
        "{method}\n{path}\n{}\n{canonical_headers}\n{}\n{payload_hash}",
        canonical_query.join("&"),
        signed.join(";")
    );
    format!(
        "ACS3-HMAC-SHA256\n{}",
        hex::encode(sha2::Sha256::digest(canonical_request.as_bytes()))
    )
}

/// `hex(HMAC-SHA256(secret, string_to_sign))`.
pub fn v3_signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks that an ISO-8601 UTC timestamp is within the window of now.
pub fn check_timestamp(ts: &str) -> Result<()> {
    let t = chrono::DateTime::parse_from_rfc3339(ts)
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%SZ")
                .map(|n| n.and_utc().fixed_offset())
        })
        .map_err(|_| ServerError::TimestampMalformed(ts.to_string()))?;
    let skew = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .unsigned_abs();
    if skew > TIMESTAMP_WINDOW.as_secs() {
        return Err(ServerError::TimestampExpired);
    }
    Ok(())
}

/// Constant-time comparison of two signatures.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Which signature a request carries.
pub enum Scheme {
    /// `Signature` parameter.
    V1,
    /// `Authorization: ACS3-HMAC-SHA256 ...`.
    V3(V3Authorization),
}

/// Decides the scheme, or says what is missing.
pub fn scheme(params: &Params, headers: &HeaderMap) -> Result<Scheme> {
    if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        if auth.starts_with("ACS3-") {
            return parse_v3_authorization(auth)
                .map(Scheme::V3)
                .ok_or(ServerError::IncompleteSignature);
        }
    }
    if params.opt("Signature").is_some() {
        return Ok(Scheme::V1);
    }
    if params.opt("AccessKeyId").is_none() {
        return Err(model::ModelError::Missing("AccessKeyId").into());
    }
    Err(ServerError::IncompleteSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_matches_alibabas_published_vector() {
        let params: BTreeMap<String, String> = [
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let sts = v1_string_to_sign("GET", &params);
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1\
             %26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0\
             %26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(
            v1_signature("testsecret", &sts),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    #[test]
    fn percent_encoding_follows_rfc3986() {
        assert_eq!(percent_encode("a b*~"), "a%20b%2A~");
        assert_eq!(percent_encode("数"), "%E6%95%B0");
        assert_eq!(percent_encode("1/200"), "1%2F200");
    }

    #[test]
    fn v3_authorization_header_parses() {
        let a = parse_v3_authorization(
            "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host;x-acs-date,Signature=abc",
        )
        .unwrap();
        assert_eq!(a.credential, "AK");
        assert_eq!(a.signed_headers, ["host", "x-acs-date"]);
        assert_eq!(a.signature, "abc");
        assert!(parse_v3_authorization("ACS3-HMAC-SHA256 Credential=AK").is_none());
    }
}
