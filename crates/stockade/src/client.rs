//! A small signed client of the ECS API, for the commands that talk to a running server
//! (`preview`, `lab`). Credentials and endpoint come from the environment, as in the
//! Alibaba Cloud CLI.

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Where and as whom to call.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    /// `http://127.0.0.1:8080` by default.
    pub endpoint: String,
    access_key_id: String,
    secret: String,
    http: reqwest::blocking::Client,
}

impl Api {
    /// From `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET` and
    /// `STOCKADE_ENDPOINT`.
    pub(crate) fn from_env() -> Result<Api> {
        let key = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
        Ok(Api {
            endpoint: std::env::var("STOCKADE_ENDPOINT")
                .unwrap_or_else(|_| "http://127.0.0.1:8080".into())
                .trim_end_matches('/')
                .to_string(),
            access_key_id: key("ALIBABA_CLOUD_ACCESS_KEY_ID")?,
            secret: key("ALIBABA_CLOUD_ACCESS_KEY_SECRET")?,
            http: reqwest::blocking::Client::new(),
        })
    }

    /// The same endpoint as another account, whose pair is in `file` (the JSON `stockade
    /// account create` prints).
    pub(crate) fn with_key_file(&self, file: &std::path::Path) -> Result<Api> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not an AccessKey pair", file.display()))?;
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        Ok(self.with_key(field("AccessKeyId"), field("AccessKeySecret")))
    }

    /// The same endpoint as another account.
    pub(crate) fn with_key(&self, access_key_id: String, secret: String) -> Api {
        Api {
            endpoint: self.endpoint.clone(),
            access_key_id,
            secret,
            http: self.http.clone(),
        }
    }

    /// The AccessKey pair.
    pub(crate) fn key(&self) -> (&str, &str) {
        (&self.access_key_id, &self.secret)
    }

    /// The operator's client: `STOCKADE_OPERATOR_ACCESS_KEY_ID` and
    /// `STOCKADE_OPERATOR_ACCESS_KEY_SECRET`, or else the pair in `key_file` (the JSON
    /// `stockade account create --operator` prints, which the embedded server writes to
    /// `DATA_DIR/operator-key`), at the same endpoint as `self`.
    pub(crate) fn operator(&self, key_file: &std::path::Path) -> Result<Api> {
        let (id, secret) = match (
            std::env::var("STOCKADE_OPERATOR_ACCESS_KEY_ID"),
            std::env::var("STOCKADE_OPERATOR_ACCESS_KEY_SECRET"),
        ) {
            (Ok(id), Ok(secret)) if !id.is_empty() && !secret.is_empty() => (id, secret),
            _ => {
                if !key_file.exists() {
                    bail!(
                        "set STOCKADE_OPERATOR_ACCESS_KEY_ID and _SECRET, or point \
                         --operator-key-file at the server's operator-key ({} not found)",
                        key_file.display()
                    );
                }
                return self.with_key_file(key_file);
            }
        };
        Ok(self.with_key(id, secret))
    }

    /// Calls an action (`Version` defaults to ECS's); an ECS error becomes `Code: Message`.
    pub(crate) fn call(&self, params: &[(&str, &str)]) -> Result<Value> {
        let mut all: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !all.iter().any(|(k, _)| k == "Version") {
            all.push(("Version".into(), server::ECS_VERSION.into()));
        }
        let query = server::auth::signed_v1_query("GET", &self.access_key_id, &self.secret, all);
        let r = self
            .http
            .get(format!("{}/?{query}", self.endpoint))
            .send()
            .with_context(|| format!("cannot reach {}", self.endpoint))?;
        let status = r.status();
        let body = r.text()?;
        let v: Value =
            serde_json::from_str(&body).with_context(|| format!("unexpected answer: {body}"))?;
        if !status.is_success() {
            bail!(
                "{}: {}",
                v["Code"].as_str().unwrap_or("error"),
                v["Message"].as_str().unwrap_or("")
            );
        }
        Ok(v)
    }
}
