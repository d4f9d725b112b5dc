//! The RPC wire format: request parameters in, ECS-shaped responses and errors out.
//!
//! Parameters come from the query string and from a form body, merged (the old SDK can put
//! them in either and signs both). Lists are `Name.N` and objects `Name.N.Field`, N from 1.
//! Responses are JSON by default and XML with `Format=XML`; errors carry `RequestId`,
//! `HostId`, `Code`, `Message` and `Recommend` with the ECS HTTP status.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use control::ControlError;
use model::ModelError;
use serde_json::{Map, Value};

/// The merged request parameters, by name.
#[derive(Debug, Clone, Default)]
pub struct Params {
    map: BTreeMap<String, String>,
    /// Set by `PreviewSecurityGroupChange`: the command runs in a rolled-back transaction and
    /// leaves here the region's policy as it would be after it.
    preview: Option<Arc<Mutex<Option<policy::Snapshot>>>>,
}

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
        Params { map, preview: None }
    }

    /// Turns these parameters into a preview of their command; the returned slot receives
    /// the policy the command would leave.
    pub fn enable_preview(&mut self) -> Arc<Mutex<Option<policy::Snapshot>>> {
        let slot = Arc::new(Mutex::new(None));
        self.preview = Some(slot.clone());
        slot
    }

    /// The preview slot, when these parameters are a preview.
    pub fn preview(&self) -> Option<&Arc<Mutex<Option<policy::Snapshot>>>> {
        self.preview.as_ref()
    }

    /// Every parameter (for signatures).
    pub fn all(&self) -> &BTreeMap<String, String> {
        &self.map
    }

    /// Adds a parameter that arrived elsewhere (V3 puts `Action` in a header).
    pub fn insert(&mut self, k: &str, v: &str) {
        self.map.insert(k.to_string(), v.to_string());
    }

    /// A parameter, empty values counting as absent (SDKs send `Key=` for unset fields).
    pub fn opt(&self, k: &str) -> Option<String> {
        self.map.get(k).filter(|v| !v.is_empty()).cloned()
    }

    /// A parameter that must be present.
    pub fn required(&self, k: &'static str) -> Result<String, ApiError> {
        self.opt(k).ok_or_else(|| ModelError::Missing(k).into())
    }

    /// A parameter parsed by its model type.
    pub fn parsed<T: std::str::FromStr<Err = ModelError>>(
        &self,
        k: &'static str,
    ) -> Result<Option<T>, ApiError> {
        Ok(self.opt(k).map(|v| v.parse()).transpose()?)
    }

    /// A boolean (`true` / `false`, case-insensitive).
    pub fn flag(&self, k: &'static str) -> Result<bool, ApiError> {
        match self.opt(k).map(|v| v.to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) if v == "true" => Ok(true),
            Some(v) if v == "false" => Ok(false),
            Some(v) => Err(ApiError::invalid_parameter(k, &v)),
        }
    }

    /// An integer within bounds.
    pub fn number(&self, k: &'static str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        match self.opt(k) {
            None => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::invalid_parameter(k, &v)),
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
}

/// An error response: ECS code, HTTP status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// `Code`.
    pub code: String,
    /// `Message`.
    pub message: String,
}

impl ApiError {
    /// An error with its parts.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// `InvalidParameter` for a parameter without a more specific code.
    pub fn invalid_parameter(name: &str, value: &str) -> ApiError {
        ApiError::new(
            400,
            "InvalidParameter",
            format!("The specified parameter {name} \"{value}\" is not valid."),
        )
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> ApiError {
        ApiError::new(e.http_status(), &e.code(), e.to_string())
    }
}

impl From<policy::PolicyError> for ApiError {
    fn from(e: policy::PolicyError) -> ApiError {
        ApiError::new(e.http_status(), e.code(), e.to_string())
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        if let ControlError::Storage(err) = &e {
            tracing::error!(error = %err, "store failure");
        }
        ApiError::new(e.http_status(), &e.code(), e.to_string())
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

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
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

/// Renders an error body.
pub fn render_error(format: Format, host: &str, request_id: &str, e: &ApiError) -> Response {
    let body = serde_json::json!({
        "HostId": host,
        "Code": e.code,
        "Message": e.message,
        "Recommend": format!("https://api.aliyun.com/troubleshoot?q={}&product=Ecs&requestId={request_id}", e.code),
    });
    render(e.status, format, "Error", request_id, body)
}
