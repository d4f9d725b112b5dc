//! The RPC wire format: request parameters in, ECS-shaped responses and errors out.
//!
//! Parameters come from the query string and from a form body, merged (the old SDK can put
//! them in either and signs both). Lists are `Name.N` and objects `Name.N.Field`, N from 1.
//! Responses are JSON by default and XML with `Format=XML`; errors carry `RequestId`,
//! `HostId`, `Code`, `Message` and `Recommend` with the ECS HTTP status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use model::{EcsError, ModelError};
use serde_json::{Map, Value};

use crate::error::{Result, ServerError};

/// The size limits of one request (`stockade serve` flags override the defaults).
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Largest body, in bytes (forms of 100 permissions are a few tens of KiB).
    pub max_body: usize,
    /// Most parameters.
    pub max_parameters: usize,
    /// Longest parameter value, in bytes.
    pub max_parameter_length: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_body: 1 << 20,
            max_parameters: control::limits::PARAMETERS_PER_REQUEST,
            max_parameter_length: control::limits::PARAMETER_LENGTH,
        }
    }
}

/// Parameters that belong to the transport, not to the request.
const TRANSPORT: [&str; 9] = [
    "Signature",
    "SignatureNonce",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureType",
    "Timestamp",
    "AccessKeyId",
    "Format",
    "ClientToken",
];

/// The merged request parameters, by name, and the names an action has read: a parameter
/// the action never reads is one it would silently ignore, so it is refused instead
/// ([`Params::unread`]).
#[derive(Debug, Default)]
pub struct Params {
    map: BTreeMap<String, String>,
    /// The full names read, shared with the parameters of nested objects
    /// ([`Object::params`]), which add their `prefix`.
    read: Arc<Mutex<BTreeSet<String>>>,
    prefix: String,
}

impl Clone for Params {
    fn clone(&self) -> Params {
        Params {
            map: self.map.clone(),
            read: Arc::new(Mutex::new(self.read_names())),
            prefix: self.prefix.clone(),
        }
    }
}

/// Parameters of every request, read by the front door or meaningless here (the owner
/// fields name the caller, whom the AccessKey already names).
const ENVELOPE: [&str; 7] = [
    "Action",
    "Version",
    "RegionId",
    "OwnerId",
    "OwnerAccount",
    "ResourceOwnerId",
    "ResourceOwnerAccount",
];

impl Params {
    /// Merges the query string and an `application/x-www-form-urlencoded` body. A name
    /// given twice keeps its first value (query first).
    pub fn parse(query: Option<&str>, form: Option<&[u8]>) -> Params {
        let mut map = BTreeMap::new();
        let pairs = query
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .chain(
                form.map(|b| form_urlencoded::parse(b).into_owned().collect::<Vec<_>>())
                    .unwrap_or_default(),
            );
        for (k, v) in pairs {
            map.entry(k).or_insert(v);
        }
        Params {
            map,
            read: Arc::default(),
            prefix: String::new(),
        }
    }

    fn read_names(&self) -> BTreeSet<String> {
        self.read.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The parameters given a value that nothing read: an action checks them before it
    /// writes, and the dispatcher after a read, so that a parameter the action does not
    /// honour is refused rather than dropped. (Empty values are absent: the SDKs send
    /// `Key=` for every unset field of their model.)
    pub fn unread(&self) -> Vec<String> {
        let read = self.read_names();
        self.map
            .iter()
            .filter(|(k, v)| !v.is_empty() && !read.contains(k.as_str()))
            .map(|(k, _)| k)
            .filter(|k| !TRANSPORT.contains(&k.as_str()) && !ENVELOPE.contains(&k.as_str()))
            .cloned()
            .collect()
    }

    /// Refuses what no ECS request carries: too many parameters, names or values too long,
    /// control characters (a NUL, an escape) anywhere but the tabs and line breaks of free
    /// text. Checked before anything reads the parameters, so no inner layer, store or
    /// answer ever sees such a value.
    pub fn check_limits(&self, limits: &RequestLimits) -> Result<()> {
        use control::limits::PARAMETER_NAME_LENGTH;
        if self.map.len() > limits.max_parameters {
            return Err(ServerError::TooManyParameters(limits.max_parameters));
        }
        let control = |c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r');
        for (k, v) in &self.map {
            if k.len() > PARAMETER_NAME_LENGTH || k.chars().any(char::is_control) {
                let shown: String = k.chars().filter(|c| !c.is_control()).take(64).collect();
                return Err(ServerError::ParameterMalformed(shown));
            }
            if v.len() > limits.max_parameter_length || v.chars().any(control) {
                return Err(ServerError::ParameterMalformed(k.clone()));
            }
        }
        Ok(())
    }

    /// A text parameter of at most `max` characters.
    pub fn bounded(&self, k: &'static str, max: usize) -> Result<Option<String>> {
        match self.opt(k) {
            Some(v) if v.chars().count() > max => Err(ServerError::ParameterTooLong(k, max)),
            other => Ok(other),
        }
    }

    /// Every parameter (for signatures).
    pub fn all(&self) -> &BTreeMap<String, String> {
        &self.map
    }

    /// The parameters that make the request (what it asks), without those of the transport
    /// (signature, format, token): what a `ClientToken` fingerprint and a cached answer's
    /// key are made of.
    pub fn request_fields(&self) -> impl Iterator<Item = (&String, &String)> {
        self.map
            .iter()
            .filter(|(k, _)| !TRANSPORT.contains(&k.as_str()))
    }

    /// Adds a parameter that arrived elsewhere (V3 puts `Action` in a header).
    pub fn insert(&mut self, k: &str, v: &str) {
        self.map.insert(k.to_string(), v.to_string());
    }

    /// A parameter, empty values counting as absent (SDKs send `Key=` for unset fields).
    pub fn opt(&self, k: &str) -> Option<String> {
        let v = self.map.get(k)?;
        let mut read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        // Every read of a request lands here: no allocation for a name already noted.
        if self.prefix.is_empty() {
            if !read.contains(k) {
                read.insert(k.to_string());
            }
        } else {
            read.insert(format!("{}{k}", self.prefix));
        }
        drop(read);
        Some(v).filter(|v| !v.is_empty()).cloned()
    }

    /// A parameter that must be present.
    pub fn required(&self, k: &'static str) -> Result<String> {
        self.opt(k).ok_or_else(|| ModelError::Missing(k).into())
    }

    /// A parameter parsed by its model type.
    pub fn parsed<T: std::str::FromStr<Err = ModelError>>(
        &self,
        k: &'static str,
    ) -> Result<Option<T>> {
        Ok(self.opt(k).map(|v| v.parse()).transpose()?)
    }

    /// A required parameter parsed by its model type (ids, mostly).
    pub fn typed<T: std::str::FromStr<Err = ModelError>>(&self, k: &'static str) -> Result<T> {
        Ok(self.required(k)?.parse()?)
    }

    /// `prefix.1`, `prefix.2`, ... each parsed by its model type.
    pub fn typed_list<T: std::str::FromStr<Err = ModelError>>(
        &self,
        prefix: &str,
    ) -> Result<Vec<T>> {
        Ok(self
            .list(prefix)
            .iter()
            .map(|v| v.parse())
            .collect::<Result<_, _>>()?)
    }

    /// `prefix.N` ids that filter a `Describe*` answer. ECS answers a filter id that names
    /// nothing with an empty page, malformed or not (`ali_eni` looks an interface up as
    /// `NetworkInterfaceId.1=None` before it creates one), so a malformed one is dropped;
    /// `None` when ids were given and none is well-formed: the answer is empty.
    pub fn id_filter<T: std::str::FromStr>(&self, prefix: &str) -> Option<Vec<T>> {
        let given = self.list(prefix);
        let ids: Vec<T> = given.iter().filter_map(|v| v.parse().ok()).collect();
        (given.is_empty() || !ids.is_empty()).then_some(ids)
    }

    /// A parameter of which Stockade honours one behaviour only, that of `supported` (ECS's
    /// default, compared case-insensitively): it is accepted when absent or asking for it,
    /// and refused otherwise, never dropped.
    pub fn fixed(&self, k: &str, supported: &str) -> Result<()> {
        match self.opt(k) {
            Some(v) if !v.eq_ignore_ascii_case(supported) => {
                Err(ServerError::UnsupportedParameter(
                    k.to_string(),
                    format!(" with a value other than {supported}"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// A boolean (`true` / `false`, case-insensitive).
    pub fn flag(&self, k: &'static str) -> Result<bool> {
        match self.opt(k).map(|v| v.to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) if v == "true" => Ok(true),
            Some(v) if v == "false" => Ok(false),
            Some(v) => Err(ServerError::invalid(k, v)),
        }
    }

    /// An integer within bounds.
    pub fn number(&self, k: &'static str, min: u64, max: u64) -> Result<Option<u64>> {
        match self.opt(k) {
            None => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ServerError::invalid(k, v)),
            },
        }
    }

    /// The indices N present as `prefix.N` or `prefix.N.*`, in numeric order.
    fn indices(&self, prefix: &str) -> Vec<u32> {
        let dotted = format!("{prefix}.");
        let mut ns: Vec<u32> = self
            .map
            .keys()
            .filter_map(|k| k.strip_prefix(&dotted))
            .filter_map(|rest| rest.split('.').next()?.parse().ok())
            .filter(|n| *n >= 1)
            .collect();
        ns.sort_unstable();
        ns.dedup();
        ns
    }

    /// `prefix.1`, `prefix.2`, ... (non-empty values), in index order.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        self.indices(prefix)
            .into_iter()
            .filter_map(|n| self.opt(&format!("{prefix}.{n}")))
            .collect()
    }

    /// `prefix.N.Field` objects, in index order.
    pub fn objects(&self, prefix: &str) -> Vec<Object<'_>> {
        self.indices(prefix)
            .into_iter()
            .map(|n| Object {
                params: self,
                prefix: format!("{prefix}.{n}."),
            })
            .collect()
    }
}

/// One `prefix.N.*` object of a [`Params`].
pub struct Object<'a> {
    params: &'a Params,
    prefix: String,
}

impl Object<'_> {
    /// A field of the object (empty counts as absent).
    pub fn opt(&self, field: &str) -> Option<String> {
        self.params.opt(&format!("{}{field}", self.prefix))
    }

    /// A list field of the object (`prefix.N.Field.M`).
    pub fn list(&self, field: &str) -> Vec<String> {
        self.params.list(&format!("{}{field}", self.prefix))
    }

    /// The object's fields as parameters of their own (`prefix.N.Field` read as `Field`), so
    /// that what parses a flat request parses the same fields nested (`NetworkInterface.N.*`
    /// of `RunInstances` are `CreateNetworkInterface`'s).
    pub fn params(&self) -> Params {
        let map = self
            .params
            .map
            .range(self.prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&self.prefix))
            .map(|(k, v)| (k[self.prefix.len()..].to_string(), v.clone()))
            .collect();
        Params {
            map,
            read: self.params.read.clone(),
            prefix: format!("{}{}", self.params.prefix, self.prefix),
        }
    }
}

/// JSON or XML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The default.
    Json,
    /// `Format=XML`.
    Xml,
}

impl Format {
    /// From the `Format` parameter (absent or anything but XML means JSON).
    pub fn of(params: &Params) -> Format {
        match params.opt("Format") {
            Some(f) if f.eq_ignore_ascii_case("xml") => Format::Xml,
            _ => Format::Json,
        }
    }
}

/// A fresh `RequestId` (upper-case UUID, as ECS).
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

/// Escapes text for XML; control characters XML cannot carry become U+FFFD.
fn xml_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\t' | '\n' | '\r') {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn xml_value(name: &str, v: &Value, out: &mut String) {
    match v {
        Value::Array(items) => {
            for item in items {
                xml_value(name, item, out);
            }
        }
        Value::Object(map) => {
            out.push_str(&format!("<{name}>"));
            for (k, v) in map {
                xml_value(k, v, out);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::Null => out.push_str(&format!("<{name}></{name}>")),
        Value::String(s) => out.push_str(&format!("<{name}>{}</{name}>", xml_escape(s))),
        other => out.push_str(&format!("<{name}>{other}</{name}>")),
    }
}

/// Renders a body with `RequestId` first, as JSON or as XML under `root`.
pub fn render(status: u16, format: Format, root: &str, request_id: &str, body: Value) -> Response {
    let mut map = Map::new();
    map.insert("RequestId".into(), Value::String(request_id.to_string()));
    if let Value::Object(fields) = body {
        for (k, v) in fields {
            map.insert(k, v);
        }
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match format {
        Format::Json => {
            let mut r = (status, Value::Object(map).to_string()).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json;charset=utf-8"),
            );
            r
        }
        Format::Xml => {
            let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
            xml_value(root, &Value::Object(map), &mut out);
            let mut r = (status, out).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/xml;charset=utf-8"),
            );
            r
        }
    }
}

/// Renders a JSON answer from the action's fields already serialised as a JSON object
/// (a cached answer), with this request's id first, as [`render`] would.
pub fn render_json_fields(request_id: &str, fields: &str) -> Response {
    let rest = fields.trim_start().strip_prefix('{').unwrap_or("}");
    let separator = if rest.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    let body = format!(
        "{{\"RequestId\":{}{separator}{rest}",
        Value::String(request_id.to_string())
    );
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    r
}

/// Renders an error body. A 5xx answer's cause is logged here, the one place every
/// refusal passes; its text never reaches the body.
pub fn render_error(format: Format, host: &str, request_id: &str, e: &ServerError) -> Response {
    render(
        e.http_status(),
        format,
        "Error",
        request_id,
        error_fields(e, host, request_id),
    )
}

/// An error body as JSON text (with `RequestId` first), for answers made below the
/// application (the HTTP layer's own refusals).
pub fn error_json(e: &ServerError, host: &str, request_id: &str) -> String {
    let mut map = Map::new();
    map.insert("RequestId".into(), Value::String(request_id.to_string()));
    if let Value::Object(fields) = error_fields(e, host, request_id) {
        map.extend(fields);
    }
    Value::Object(map).to_string()
}

/// The fields of an error body (without `RequestId`), logging the refusal.
fn error_fields(e: &ServerError, host: &str, request_id: &str) -> Value {
    let code = e.code();
    if let Some(cause) = e.cause() {
        tracing::error!(%request_id, %code, %cause, "request failed");
    } else {
        tracing::debug!(%request_id, %code, message = %e, "request refused");
    }
    serde_json::json!({
        "HostId": host,
        "Code": code,
        "Message": e.to_string(),
        "Recommend": format!("https://api.aliyun.com/troubleshoot?q={code}&product=Ecs&requestId={request_id}"),
    })
}
