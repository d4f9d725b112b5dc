//! `DescribeRegions`: the regions this server serves.

use serde_json::{json, Value};

use super::{Call, Reply};
use crate::error::Result;

/// `DescribeRegions`.
pub(super) fn describe_regions(call: &Call) -> Result<Reply> {
    let regions: Vec<Value> = call
        .state
        .regions
        .iter()
        .map(
            |r| json!({"RegionId": r, "LocalName": r, "RegionEndpoint": "", "Status": "available"}),
        )
        .collect();
    Ok(Reply::Body(json!({"Regions": {"Region": regions}})))
}
