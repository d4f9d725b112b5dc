//! Instance attributes Stockade keeps and answers back without acting on them: billing, the
//! spot market, deployment sets, key pairs. Terraform's `alicloud_instance` and the SDKs read
//! them back into state, so one given and then answered with ECS's default would be a
//! permanent diff; one accepted and dropped would be a silent lie. Each is listed once below,
//! with its wire name, what ECS accepts and what ECS answers when it was not given; the
//! creation actions parse them from the request ([`parse`]) and the instance answers carry
//! every one ([`answer`]). `DeletionProtection` is also enforced (by the control plane).

use control::InstanceOptions;
use serde_json::{json, Value};

use crate::error::{Result, ServerError};
use crate::wire::Params;

/// What a value may be.
enum Kind {
    /// An integer in `min..=max`.
    Int { min: u64, max: u64 },
    /// A non-negative decimal number (a price).
    Price,
    /// `true` or `false`.
    Bool,
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// Text of at most this many characters.
    Text(usize),
}

/// One attribute: its wire name, what it accepts, and ECS's answer without it (`None`: the
/// instance answers do not carry it).
struct Attribute {
    name: &'static str,
    kind: Kind,
    default: Option<fn() -> Value>,
}

/// The attributes `RunInstances` and `CreateInstance` keep, and the instance answers
/// carry. (`InternetMaxBandwidthOut` above 0 also gives the instance a public address.)
const INSTANCE: &[Attribute] = &[
    Attribute {
        name: "InternetMaxBandwidthOut",
        kind: Kind::Int { min: 0, max: 1024 },
        default: Some(|| json!(0)),
    },
    Attribute {
        name: "InternetMaxBandwidthIn",
        kind: Kind::Int { min: 1, max: 10240 },
        // ECS's inbound default for pay-by-traffic instances.
        default: Some(|| json!(200)),
    },
    Attribute {
        name: "InternetChargeType",
        kind: Kind::OneOf(&["PayByBandwidth", "PayByTraffic"]),
        default: Some(|| json!("PayByTraffic")),
    },
    Attribute {
        name: "InstanceChargeType",
        kind: Kind::OneOf(&["PrePaid", "PostPaid"]),
        default: Some(|| json!("PostPaid")),
    },
    Attribute {
        name: "SpotStrategy",
        kind: Kind::OneOf(&["NoSpot", "SpotWithPriceLimit", "SpotAsPriceGo"]),
        default: Some(|| json!("NoSpot")),
    },
    Attribute {
        name: "SpotPriceLimit",
        kind: Kind::Price,
        default: Some(|| json!(0.0)),
    },
    Attribute {
        name: "SpotDuration",
        kind: Kind::Int { min: 0, max: 6 },
        default: Some(|| json!(0)),
    },
    Attribute {
        name: "SpotInterruptionBehavior",
        kind: Kind::OneOf(&["Terminate", "Stop"]),
        default: Some(|| json!("Terminate")),
    },
    Attribute {
        name: "DeploymentSetId",
        kind: Kind::Text(64),
        default: Some(|| json!("")),
    },
    Attribute {
        name: "DeploymentSetGroupNo",
        kind: Kind::Int { min: 1, max: 7 },
        default: Some(|| json!(0)),
    },
    Attribute {
        name: "KeyPairName",
        kind: Kind::Text(128),
        default: Some(|| json!("")),
    },
    Attribute {
        name: "CreditSpecification",
        kind: Kind::OneOf(&["Standard", "Unlimited"]),
        default: Some(|| json!("")),
    },
    Attribute {
        name: "AutoReleaseTime",
        kind: Kind::Text(32),
        default: Some(|| json!("")),
    },
    Attribute {
        name: "HpcClusterId",
        kind: Kind::Text(64),
        default: Some(|| json!("")),
    },
    Attribute {
        name: control::DELETION_PROTECTION,
        kind: Kind::Bool,
        default: Some(|| json!(false)),
    },
    // The subscription terms of a `PrePaid` instance: kept, though nothing is billed here,
    // and answered by no read (ECS's answers carry only `ExpiredTime` and `SaleCycle`).
    Attribute {
        name: "Period",
        kind: Kind::Int { min: 1, max: 60 },
        default: None,
    },
    Attribute {
        name: "PeriodUnit",
        kind: Kind::OneOf(&["Week", "Month", "Year"]),
        default: None,
    },
    Attribute {
        name: "AutoRenew",
        kind: Kind::Bool,
        default: None,
    },
    Attribute {
        name: "AutoRenewPeriod",
        kind: Kind::Int { min: 1, max: 12 },
        default: None,
    },
];

/// The attributes `ModifyInstanceAttribute` may change.
const MODIFIABLE: &[&str] = &["CreditSpecification", control::DELETION_PROTECTION];

/// The instance attributes a creation request gives, checked.
pub(super) fn parse(p: &Params) -> Result<InstanceOptions> {
    parse_named(p, INSTANCE.iter())
}

/// The attributes a `ModifyInstanceAttribute` request changes, checked.
pub(super) fn parse_changes(p: &Params) -> Result<InstanceOptions> {
    parse_named(p, INSTANCE.iter().filter(|a| MODIFIABLE.contains(&a.name)))
}

fn parse_named<'a>(
    p: &Params,
    wanted: impl Iterator<Item = &'a Attribute>,
) -> Result<InstanceOptions> {
    let mut out = InstanceOptions::new();
    for a in wanted {
        let Some(v) = p.opt(a.name) else { continue };
        let invalid = || ServerError::invalid(a.name, v.clone());
        let value = match a.kind {
            Kind::Int { min, max } => {
                let n: u64 = v.parse().map_err(|_| invalid())?;
                if !(min..=max).contains(&n) {
                    return Err(invalid());
                }
                json!(n)
            }
            Kind::Price => match v.parse::<f64>() {
                Ok(n) if n.is_finite() && n >= 0.0 => json!(n),
                _ => return Err(invalid()),
            },
            Kind::Bool => match v.to_ascii_lowercase().as_str() {
                "true" => json!(true),
                "false" => json!(false),
                _ => return Err(invalid()),
            },
            Kind::OneOf(words) => {
                if !words.contains(&v.as_str()) {
                    return Err(invalid());
                }
                json!(v)
            }
            Kind::Text(max) => {
                if v.chars().count() > max {
                    return Err(ServerError::ParameterTooLong(a.name, max));
                }
                json!(v)
            }
        };
        out.insert(a.name.to_string(), value);
    }
    Ok(out)
}

/// Every attribute as an instance answer carries it: as given, or ECS's default.
pub(super) fn answer(stored: &InstanceOptions) -> Value {
    Value::Object(
        INSTANCE
            .iter()
            .filter_map(|a| {
                let default = a.default?;
                let v = stored.get(a.name).cloned().unwrap_or_else(default);
                Some((a.name.to_string(), v))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Params {
        Params::parse(Some(q), None)
    }

    #[test]
    fn given_values_are_checked_kept_and_answered_over_the_defaults() {
        let kept = parse(&params(
            "SpotStrategy=SpotWithPriceLimit&SpotPriceLimit=0.5&DeletionProtection=TRUE&InternetMaxBandwidthIn=50",
        ))
        .unwrap();
        let answered = answer(&kept);
        assert_eq!(answered["SpotStrategy"], "SpotWithPriceLimit");
        assert_eq!(answered["SpotPriceLimit"], 0.5);
        assert_eq!(answered["DeletionProtection"], true);
        assert_eq!(answered["InternetMaxBandwidthIn"], 50);
        assert_eq!(answered["SpotInterruptionBehavior"], "Terminate");
        let answered_kinds = INSTANCE.iter().filter(|a| a.default.is_some()).count();
        assert_eq!(answered.as_object().unwrap().len(), answered_kinds);
        for bad in [
            "SpotStrategy=Cheap",
            "SpotPriceLimit=-1",
            "SpotPriceLimit=NaN",
            "DeploymentSetGroupNo=8",
            "DeletionProtection=yes",
        ] {
            assert!(parse(&params(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn modify_changes_only_what_ecs_lets_it() {
        let changes = parse_changes(&params(
            "DeletionProtection=true&SpotStrategy=SpotAsPriceGo",
        ))
        .unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes["DeletionProtection"], true);
    }
}
