//! `stockade account` on the embedded store: secrets sealed at rest in an owner-only data
//! directory, and AccessKey rotation (a new pair, the old one disabled, then deleted).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn stockade(dir: &Path, args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(["account"])
        .args(args)
        .args(["--data-dir", dir.to_str().unwrap()])
        .env_remove("STOCKADE_KEY_FILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (
        out.status.success(),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stderr,
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_copy_of_the_database_alone_yields_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ok, created, err) = stockade(&data, &["create", "--name", "alice"]);
    assert!(ok, "{err}");
    let secret = created["AccessKeySecret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 30);
    assert_eq!(mode(&data), 0o700, "the data directory is its owner's");
    let mut database = Vec::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(mode(&path), 0o600, "{name} is its owner's only");
        if name != "master.key" {
            database.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(!database.is_empty());
    let found = database
        .windows(secret.len())
        .any(|w| w == secret.as_bytes());
    assert!(!found, "the secret is in the database files in plain text");
    // With its key the server still knows the secret: the second key of the pair works.
    let (ok, listed, err) = stockade(&data, &["key", "list", "--name", "alice"]);
    assert!(ok, "{err}");
    assert_eq!(listed["AccessKeys"][0]["Status"], "Active");
    assert!(
        !listed.to_string().contains(&secret),
        "listing never shows secrets"
    );
}

#[test]
fn access_keys_rotate_new_pair_old_disabled_then_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, first, _) = stockade(&data, &["create", "--name", "bob"]);
    let old = first["AccessKeyId"].as_str().unwrap().to_string();
    let (ok, second, err) = stockade(&data, &["key", "create", "--name", "bob"]);
    assert!(ok, "{err}");
    assert_eq!(second["AccountId"], first["AccountId"]);
    assert_ne!(second["AccessKeyId"], first["AccessKeyId"]);
    let (ok, _, err) = stockade(&data, &["key", "create", "--name", "bob"]);
    assert!(
        !ok && err.contains("LimitExceeded.AccessKey"),
        "two pairs at most: {err}"
    );
    let (ok, _, err) = stockade(&data, &["key", "delete", "--access-key-id", &old]);
    assert!(
        !ok && err.contains("InvalidAccessKeyStatus.Active"),
        "an active key is not deleted: {err}"
    );
    let (ok, _, err) = stockade(&data, &["key", "disable", "--access-key-id", &old]);
    assert!(ok, "{err}");
    let (_, listed, _) = stockade(&data, &["key", "list", "--name", "bob"]);
    let status = |id: &str| {
        listed["AccessKeys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["AccessKeyId"] == id)
            .map(|k| k["Status"].as_str().unwrap().to_string())
    };
    assert_eq!(status(&old).as_deref(), Some("Inactive"));
    assert_eq!(
        status(second["AccessKeyId"].as_str().unwrap()).as_deref(),
        Some("Active")
    );
    let (ok, _, err) = stockade(&data, &["key", "delete", "--access-key-id", &old]);
    assert!(ok, "{err}");
    let (_, listed, _) = stockade(&data, &["key", "list", "--name", "bob"]);
    assert_eq!(listed["AccessKeys"].as_array().unwrap().len(), 1);
    let (ok, _, err) = stockade(&data, &["key", "list", "--name", "nobody"]);
    assert!(!ok && err.contains("InvalidAccountName.NotFound"), "{err}");
}

/// `stockade serve --limit NAME=N`: the server enforces (and `DescribeAccountAttributes`
/// answers) the operator's limit; an unknown name or a zero is refused at start.
#[test]
fn serve_takes_limits_from_the_operator() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let serve = |limit: &str| {
        Command::new(env!("CARGO_BIN_EXE_stockade"))
            .args(["serve", "--listen", "127.0.0.1:0", "--limit", limit])
            .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
            .env("STOCKADE_BOOTSTRAP_ACCESS_KEY_ID", "LTAIlimitstest0001")
            .env(
                "STOCKADE_BOOTSTRAP_ACCESS_KEY_SECRET",
                "limitsTestSecret000000000000001",
            )
            .env_remove("STOCKADE_KEY_FILE")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    for bad in ["nosuch-limit=3", "groups-per-region=0", "groups-per-region"] {
        let out = serve(bad).wait_with_output().unwrap();
        assert!(!out.status.success(), "{bad} is refused");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("limit"),
            "{bad}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut server = serve("groups-per-region=7");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server output").unwrap();
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.to_string();
        }
    };
    let query = server::auth::signed_v1_query(
        "GET",
        "LTAIlimitstest0001",
        "limitsTestSecret000000000000001",
        vec![
            ("Action".into(), "DescribeAccountAttributes".into()),
            ("Version".into(), "2014-05-26".into()),
            ("RegionId".into(), "cn-hangzhou".into()),
            ("AttributeName.1".into(), "max-security-groups".into()),
        ],
    );
    let body = reqwest::blocking::get(format!("http://{addr}/?{query}"))
        .unwrap()
        .text()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["AccountAttributeItems"]["AccountAttributeItem"][0]["AttributeValues"]["ValueItem"][0]
            ["Value"],
        "7",
        "{body}"
    );
}
