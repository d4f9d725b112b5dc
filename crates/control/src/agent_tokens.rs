//! Each host's agent credential: issued by the operator for one host, kept as a digest,
//! revocable. An agent holding it reads its own host's share of the policy and reports its
//! own status, nothing of another host (a host is trusted with what runs on it, not with
//! the fleet).

use model::HostId;
use serde_json::json;

use crate::sql::{args, Db};
use crate::{now, random_string, ControlError, Result, Tx, ALNUM};

/// The digest a token is kept and looked up by.
fn digest(token: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Characters of a token's secret part.
const SECRET_LENGTH: usize = 40;

impl Tx<'_> {
    /// `IssueAgentToken`: a new token for `host`, replacing any it had (rotation). The token
    /// is answered once; the store keeps its digest. Operator only.
    pub fn issue_agent_token(&self, host: &HostId) -> Result<String> {
        self.require_operator()?;
        let token = format!("skh-{}", random_string(ALNUM, SECRET_LENGTH));
        self.db.execute(
            "DELETE FROM agent_tokens WHERE host_id = ?1",
            args![host.as_str()],
        )?;
        self.db.execute(
            "INSERT INTO agent_tokens (host_id, digest, created_at) VALUES (?1, ?2, ?3)",
            args![host.as_str(), digest(&token), now()],
        )?;
        self.log("IssueAgentToken", host.as_str(), json!({}))?;
        Ok(token)
    }

    /// `RevokeAgentToken`: the host's token stops working at once. Operator only.
    pub fn revoke_agent_token(&self, host: &HostId) -> Result<()> {
        self.require_operator()?;
        let gone = self.db.execute(
            "DELETE FROM agent_tokens WHERE host_id = ?1",
            args![host.as_str()],
        )?;
        if gone == 0 {
            return Err(ControlError::AgentTokenNotFound(host.clone()));
        }
        self.log("RevokeAgentToken", host.as_str(), json!({}))
    }
}

/// The host an agent token was issued for, if it is a live one.
pub(crate) fn host_of(db: &dyn Db, token: &str) -> Result<Option<HostId>> {
    db.query_opt(
        "SELECT host_id FROM agent_tokens WHERE digest = ?1",
        args![digest(token)],
    )?
    .map(|r| r.parsed(0))
    .transpose()
}
