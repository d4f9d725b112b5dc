//! The server layer's error: every refusal the HTTP edge makes itself (unknown action or
//! region, authentication, parameters no inner layer parses), and the inner layers' errors
//! carried through. Each variant answers exactly one ECS code and HTTP status
//! ([`model::EcsError`]); internal failures are logged with their cause and answered as
//! `InternalError` with a fixed message, so no backend text reaches a client.

use std::borrow::Cow;

use control::ControlError;
use model::{EcsError, ModelError};
use policy::PolicyError;
use thiserror::Error;

/// Why a request was refused.
#[derive(Debug, Error)]
pub enum ServerError {
    /// A wire value did not parse.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The control plane refused the command.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The engine refused the question (a flow it cannot judge).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// No such action in the named product and version.
    #[error("Specified api is not found, please check your url and method.")]
    ActionNotFound,
    /// A region this server does not serve.
    #[error("The specified RegionId \"{0}\" does not exist.")]
    RegionNotFound(String),
    /// More parameters than any request needs.
    #[error("The request has more than {0} parameters.")]
    TooManyParameters(usize),
    /// A parameter name or value that is too long, or holds control characters (NUL, ...).
    #[error("The specified parameter {0} is too long or contains control characters.")]
    ParameterMalformed(String),
    /// A parameter this server does not honour, or a value of it that it cannot honour
    /// (Stockade refuses what it would otherwise silently ignore).
    #[error("The parameter {0} is not supported here{1}.")]
    UnsupportedParameter(String, String),
    /// A parameter longer than its field allows.
    #[error("The specified parameter {0} is longer than {1} characters.")]
    ParameterTooLong(&'static str, usize),
    /// A request line longer than the HTTP parser reads (64 KiB).
    #[error("The request URI is too long.")]
    UriTooLong,
    /// Request headers larger than the HTTP parser reads.
    #[error("The request headers are too large.")]
    HeadersTooLarge,
    /// A request the HTTP parser cannot read.
    #[error("The request is not well-formed HTTP.")]
    MalformedRequest,
    /// The server has as many connections as it takes.
    #[error("Request was denied due to request throttling.")]
    Throttling,
    /// The peer has as many connections as one peer may have.
    #[error("Request was denied due to user flow control.")]
    ThrottlingUser,
    /// The body exceeds what any request needs.
    #[error("The request body is too large.")]
    BodyTooLarge,
    /// `DryRun=true`: the command was validated and rolled back.
    #[error("Request validation has been passed with DryRun flag set.")]
    DryRunOperation,
    /// A `SignatureNonce` seen before within the window.
    #[error("Specified signature nonce was used already.")]
    SignatureNonceUsed,
    /// The signature does not match; the old SDK reads the server's string to sign after
    /// the colon.
    #[error(
        "Specified signature is not matched with our calculation. server string to sign is:{0}"
    )]
    SignatureMismatch(String),
    /// `x-acs-content-sha256` is not the body's hash.
    #[error("The x-acs-content-sha256 header does not match the request body.")]
    ContentHashMismatch,
    /// No signature, or an `Authorization` header of an unknown form.
    #[error("The request signature does not conform to Alibaba Cloud standards.")]
    IncompleteSignature,
    /// A `SignatureMethod` other than HMAC-SHA1.
    #[error("The specified SignatureMethod \"{0}\" is not supported.")]
    SignatureMethodNotSupported(String),
    /// A `SignatureVersion` other than 1.0.
    #[error("The specified SignatureVersion \"{0}\" is not supported.")]
    SignatureVersionNotSupported(String),
    /// A `SignatureType` (such as `BEARERTOKEN`) other than the AccessKey signature's empty one.
    #[error("The specified SignatureType \"{0}\" is not supported.")]
    SignatureTypeNotSupported(String),
    /// A V3 signature that does not cover a header it must cover, or names an empty one.
    #[error("The request signature must sign the header \"{0}\".")]
    HeaderNotSigned(String),
    /// The timestamp is outside the window.
    #[error("Specified time stamp or date value is expired.")]
    TimestampExpired,
    /// The timestamp does not parse.
    #[error("Specified time stamp or date value \"{0}\" is not well formatted.")]
    TimestampMalformed(String),
    /// An agent without the server's agent token.
    #[error("The agent token is missing, revoked, or neither the fleet's nor a host's.")]
    AgentTokenInvalid,
    /// A host's agent token used for another host.
    #[error("The agent token of host \"{0}\" serves that host only.")]
    AgentTokenOtherHost(String),
    /// A tag key that is too long, reserved, or a URL.
    #[error("The specified tag key \"{0}\" is not valid.")]
    TagKeyMalformed(String),
    /// A tag value that is too long or a URL.
    #[error("The specified tag value is not valid.")]
    TagValueMalformed,
    /// The same tag key twice in one request.
    #[error("The specified tag keys are repeated.")]
    TagKeyDuplicate,
    /// A `ResourceType` that carries no tags here.
    #[error("The specified ResourceType \"{0}\" is not supported.")]
    ResourceTypeNotSupported(String),
    /// `PrivateIpAddress` is not an IPv4 address.
    #[error("The specified PrivateIpAddress \"{0}\" is not valid.")]
    PrivateIpMalformed(String),
    /// `PrivateIpAddress` for a classic-network instance: the classic network allocates its
    /// addresses itself (and shares them across accounts, so choosing one would reveal
    /// which addresses other accounts hold).
    #[error("PrivateIpAddress can only be given with a VSwitchId.")]
    PrivateIpWithoutVSwitch,
    /// `LaunchTemplateId` / `LaunchTemplateName`: Stockade keeps no launch templates, so
    /// every one named is missing.
    #[error("The specified launch template \"{0}\" does not exist.")]
    LaunchTemplateNotFound(String),
    /// `InstanceName` too long.
    #[error("The specified InstanceName is not valid.")]
    InstanceNameMalformed,
    /// `HostName` (or one of `HostNames.N`) is not a host name ECS accepts.
    #[error("The specified HostName \"{0}\" is not valid: 2 to 64 letters, digits, dots and hyphens, not starting or ending with a dot or hyphen, no two dots in a row.")]
    HostNameMalformed(String),
    /// `CidrBlock` is not an IPv4 network.
    #[error("The specified CidrBlock \"{0}\" is not valid.")]
    CidrBlockMalformed(String),
    /// The same `SecurityGroupRuleId` twice in one revoke.
    #[error("The specified SecurityGroupRuleId is repeated.")]
    RuleIdRepeated,
    /// Something that should not fail did (a stored policy the engine refuses, a panicked
    /// request): the cause is logged, never shown.
    #[error("The request processing has failed due to some unknown error.")]
    Internal(String),
}

/// Result of server operations.
pub type Result<T, E = ServerError> = std::result::Result<T, E>;

impl ServerError {
    /// An internal failure with its cause (logged when the error is answered).
    pub fn internal(cause: impl std::fmt::Display) -> ServerError {
        ServerError::Internal(cause.to_string())
    }

    /// `InvalidParameter` for a parameter without a more specific code.
    pub fn invalid(name: &'static str, value: impl Into<String>) -> ServerError {
        ModelError::InvalidParameter(name, value.into()).into()
    }

    /// A parameter the action does not read at all.
    pub fn unsupported(name: impl Into<String>) -> ServerError {
        ServerError::UnsupportedParameter(name.into(), String::new())
    }

    /// The cause to log for a 5xx answer (its text is never sent).
    pub fn cause(&self) -> Option<&str> {
        match self {
            ServerError::Internal(cause) | ServerError::Control(ControlError::Storage(cause)) => {
                Some(cause)
            }
            _ => None,
        }
    }
}

impl EcsError for ServerError {
    fn code(&self) -> Cow<'static, str> {
        let code = match self {
            ServerError::Model(e) => return e.code(),
            ServerError::Control(e) => return e.code(),
            ServerError::Policy(e) => return e.code(),
            ServerError::ActionNotFound => "InvalidAction.NotFound",
            ServerError::Throttling => "Throttling",
            ServerError::UriTooLong
            | ServerError::HeadersTooLarge
            | ServerError::MalformedRequest => "InvalidParameter",
            ServerError::ThrottlingUser => "Throttling.User",
            ServerError::RegionNotFound(_) => "InvalidRegionId.NotFound",
            ServerError::BodyTooLarge
            | ServerError::TooManyParameters(_)
            | ServerError::ParameterMalformed(_)
            | ServerError::ParameterTooLong(..) => "InvalidParameter",
            ServerError::DryRunOperation => "DryRunOperation",
            ServerError::SignatureNonceUsed => "SignatureNonceUsed",
            ServerError::SignatureMismatch(_) | ServerError::ContentHashMismatch => {
                "SignatureDoesNotMatch"
            }
            ServerError::IncompleteSignature => "IncompleteSignature",
            ServerError::SignatureMethodNotSupported(_)
            | ServerError::SignatureVersionNotSupported(_)
            | ServerError::SignatureTypeNotSupported(_) => "InvalidParameter",
            ServerError::HeaderNotSigned(_) => "IncompleteSignature",
            ServerError::TimestampExpired => "InvalidTimeStamp.Expired",
            ServerError::TimestampMalformed(_) => "InvalidTimeStamp.Format",
            ServerError::AgentTokenInvalid => "InvalidAgentToken",
            ServerError::AgentTokenOtherHost(_) => "Forbidden.AgentToken",
            ServerError::TagKeyMalformed(_) => "InvalidTagKey.Malformed",
            ServerError::TagValueMalformed => "InvalidTagValue.Malformed",
            ServerError::TagKeyDuplicate => "InvalidTagKey.Duplicate",
            ServerError::ResourceTypeNotSupported(_) => "InvalidResourceType.NotSupported",
            ServerError::PrivateIpMalformed(_) => "InvalidPrivateIpAddress.Malformed",
            ServerError::PrivateIpWithoutVSwitch => "InvalidParameter",
            ServerError::LaunchTemplateNotFound(_) => "InvalidLaunchTemplate.NotFound",
            ServerError::InstanceNameMalformed => "InvalidInstanceName.Malformed",
            ServerError::HostNameMalformed(_) => "InvalidHostName.Malformed",
            ServerError::CidrBlockMalformed(_) => "InvalidCidrBlock.Malformed",
            ServerError::RuleIdRepeated => "InvalidParam.SecurityGroupRuleIdRepeated",
            ServerError::UnsupportedParameter(..) => "UnsupportedParameter",
            ServerError::Internal(_) => "InternalError",
        };
        code.into()
    }

    fn http_status(&self) -> u16 {
        match self {
            ServerError::Model(e) => e.http_status(),
            ServerError::Control(e) => e.http_status(),
            ServerError::Policy(e) => e.http_status(),
            ServerError::ActionNotFound
            | ServerError::RegionNotFound(_)
            | ServerError::LaunchTemplateNotFound(_) => 404,
            ServerError::AgentTokenInvalid => 401,
            ServerError::AgentTokenOtherHost(_) => 403,
            ServerError::Throttling => 503,
            ServerError::UriTooLong => 414,
            ServerError::HeadersTooLarge => 431,
            ServerError::Internal(_) => 500,
            ServerError::BodyTooLarge
            | ServerError::MalformedRequest
            | ServerError::ThrottlingUser
            | ServerError::TooManyParameters(_)
            | ServerError::ParameterMalformed(_)
            | ServerError::ParameterTooLong(..)
            | ServerError::DryRunOperation
            | ServerError::SignatureNonceUsed
            | ServerError::SignatureMismatch(_)
            | ServerError::ContentHashMismatch
            | ServerError::IncompleteSignature
            | ServerError::SignatureMethodNotSupported(_)
            | ServerError::SignatureVersionNotSupported(_)
            | ServerError::SignatureTypeNotSupported(_)
            | ServerError::HeaderNotSigned(_)
            | ServerError::TimestampExpired
            | ServerError::TimestampMalformed(_)
            | ServerError::TagKeyMalformed(_)
            | ServerError::TagValueMalformed
            | ServerError::TagKeyDuplicate
            | ServerError::ResourceTypeNotSupported(_)
            | ServerError::PrivateIpMalformed(_)
            | ServerError::PrivateIpWithoutVSwitch
            | ServerError::InstanceNameMalformed
            | ServerError::HostNameMalformed(_)
            | ServerError::CidrBlockMalformed(_)
            | ServerError::RuleIdRepeated
            | ServerError::UnsupportedParameter(..) => 400,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_failures_hide_their_cause() {
        for e in [
            ServerError::internal("disk I/O error at page 7"),
            ServerError::Control(ControlError::Storage("no such table: x".into())),
        ] {
            assert_eq!(e.code(), "InternalError");
            assert_eq!(e.http_status(), 500);
            assert!(!e.to_string().contains("disk") && !e.to_string().contains("table"));
            assert!(e.cause().is_some());
        }
    }

    #[test]
    fn inner_errors_keep_their_codes() {
        let e: ServerError = ModelError::Missing("RegionId").into();
        assert_eq!(
            (e.code().as_ref(), e.http_status()),
            ("MissingParameter.RegionId", 400)
        );
        let e: ServerError = PolicyError::UnknownInstance("i-abc".parse().unwrap()).into();
        assert_eq!(
            (e.code().as_ref(), e.http_status()),
            ("InvalidInstanceId.NotFound", 404)
        );
    }
}
