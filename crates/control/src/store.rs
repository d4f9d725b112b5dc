//! The embedded SQLite store: opening, durability settings and versioned migrations.
//!
//! WAL with `synchronous=FULL`: a commit returns only once it is on disk, so an acknowledged
//! request survives `kill -9` and a crash, and a half-written transaction is rolled back on
//! the next open. Migrations are numbered and recorded in `PRAGMA user_version`; each runs in
//! its own transaction.

use std::path::Path;

use rusqlite::Connection;

/// Schema migrations, in order; migration `i` brings the schema to version `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: accounts, security groups, rules, tags, idempotency tokens, the change log.
    r#"
    CREATE TABLE accounts (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        created_at  TEXT NOT NULL
    );
    CREATE TABLE access_keys (
        id          TEXT PRIMARY KEY,
        secret      TEXT NOT NULL,
        account_id  INTEGER NOT NULL REFERENCES accounts(id)
    );
    CREATE TABLE security_groups (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        account_id   INTEGER NOT NULL REFERENCES accounts(id),
        region       TEXT NOT NULL,
        name         TEXT NOT NULL,
        description  TEXT NOT NULL,
        group_type   TEXT NOT NULL,
        vpc_id       TEXT,
        inner_access TEXT NOT NULL,
        created_at   TEXT NOT NULL
    );
    CREATE INDEX security_groups_by_owner ON security_groups(account_id, region);
    CREATE TABLE permissions (
        seq                  INTEGER PRIMARY KEY AUTOINCREMENT,
        id                   TEXT NOT NULL UNIQUE,
        group_id             TEXT NOT NULL REFERENCES security_groups(id) ON DELETE CASCADE,
        direction            TEXT NOT NULL,
        policy               TEXT NOT NULL,
        priority             TEXT NOT NULL,
        ip_protocol          TEXT NOT NULL,
        port_range           TEXT NOT NULL,
        source_port_range    TEXT,
        source_cidr_ip       TEXT,
        ipv6_source_cidr_ip  TEXT,
        dest_cidr_ip         TEXT,
        ipv6_dest_cidr_ip    TEXT,
        peer_group_id        TEXT,
        peer_owner_account   TEXT,
        peer_owner_id        TEXT,
        peer_prefix_list_id  TEXT,
        nic_type             TEXT NOT NULL,
        description          TEXT NOT NULL,
        created_at           TEXT NOT NULL
    );
    CREATE INDEX permissions_by_group ON permissions(group_id, seq);
    CREATE INDEX permissions_by_peer ON permissions(peer_group_id);
    CREATE TABLE tags (
        resource_type  TEXT NOT NULL,
        resource_id    TEXT NOT NULL,
        key            TEXT NOT NULL,
        value          TEXT NOT NULL,
        PRIMARY KEY (resource_type, resource_id, key)
    );
    CREATE TABLE client_tokens (
        account_id   INTEGER NOT NULL,
        token        TEXT NOT NULL,
        fingerprint  TEXT NOT NULL,
        response     TEXT NOT NULL,
        PRIMARY KEY (account_id, token)
    );
    CREATE TABLE change_log (
        revision    INTEGER PRIMARY KEY AUTOINCREMENT,
        account_id  INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        subject     TEXT NOT NULL,
        payload     TEXT NOT NULL,
        at          TEXT NOT NULL
    );
    "#,
    // 2: VPCs, vSwitches, instances and their ordered security-group memberships.
    r#"
    CREATE TABLE vpcs (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        account_id   INTEGER NOT NULL REFERENCES accounts(id),
        region       TEXT NOT NULL,
        name         TEXT NOT NULL,
        description  TEXT NOT NULL,
        cidr_block   TEXT NOT NULL,
        created_at   TEXT NOT NULL
    );
    CREATE TABLE vswitches (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        vpc_id       TEXT NOT NULL REFERENCES vpcs(id),
        account_id   INTEGER NOT NULL REFERENCES accounts(id),
        region       TEXT NOT NULL,
        zone_id      TEXT NOT NULL,
        name         TEXT NOT NULL,
        description  TEXT NOT NULL,
        cidr_block   TEXT NOT NULL,
        created_at   TEXT NOT NULL
    );
    CREATE TABLE instances (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        id             TEXT NOT NULL UNIQUE,
        account_id     INTEGER NOT NULL REFERENCES accounts(id),
        region         TEXT NOT NULL,
        zone_id        TEXT NOT NULL,
        name           TEXT NOT NULL,
        description    TEXT NOT NULL,
        image_id       TEXT NOT NULL,
        instance_type  TEXT NOT NULL,
        vpc_id         TEXT,
        vswitch_id     TEXT REFERENCES vswitches(id),
        private_ip     TEXT NOT NULL,
        public_ip      TEXT,
        status         TEXT NOT NULL,
        created_at     TEXT NOT NULL
    );
    CREATE INDEX instances_by_region ON instances(region, vpc_id);
    CREATE TABLE memberships (
        instance_id  TEXT NOT NULL REFERENCES instances(id),
        group_id     TEXT NOT NULL REFERENCES security_groups(id),
        position     INTEGER NOT NULL,
        PRIMARY KEY (instance_id, group_id)
    );
    CREATE INDEX memberships_by_group ON memberships(group_id);
    "#,
    // 3: signature nonces, for replicas that must refuse a replay made on another one (the
    // embedded store keeps them in a file of their own, `nonces.db`; see `open_nonces`).
    r#"
    CREATE TABLE nonces (
        access_key  TEXT NOT NULL,
        nonce       TEXT NOT NULL,
        seen_at     INTEGER NOT NULL,
        PRIMARY KEY (access_key, nonce)
    );
    "#,
    // 4: AccessKeys can be disabled (rotation: a new pair, the old one disabled, then
    // deleted); secrets are sealed from now on (`secrets.rs`, done when the store opens).
    r#"
    ALTER TABLE access_keys ADD COLUMN status TEXT NOT NULL DEFAULT 'Active';
    "#,
    // 5: network interfaces (every instance's primary one; created for existing instances
    // when the store opens, see `Control::ensure_primary_interfaces`), their placement on
    // hosts (operator only), operator accounts, IPv6 blocks of VPCs and vSwitches.
    r#"
    ALTER TABLE accounts ADD COLUMN operator INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE vpcs ADD COLUMN ipv6_cidr TEXT;
    ALTER TABLE vswitches ADD COLUMN ipv6_cidr TEXT;
    CREATE TABLE network_interfaces (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        account_id   INTEGER NOT NULL REFERENCES accounts(id),
        region       TEXT NOT NULL,
        instance_id  TEXT REFERENCES instances(id),
        kind         TEXT NOT NULL,
        vpc_id       TEXT,
        vswitch_id   TEXT,
        zone_id      TEXT NOT NULL,
        private_ip   TEXT NOT NULL,
        ipv6         TEXT,
        mac          TEXT NOT NULL,
        name         TEXT NOT NULL,
        description  TEXT NOT NULL,
        host         TEXT,
        created_at   TEXT NOT NULL
    );
    CREATE INDEX network_interfaces_by_instance ON network_interfaces(instance_id);
    CREATE INDEX network_interfaces_by_host ON network_interfaces(region, host);
    CREATE INDEX network_interfaces_by_address ON network_interfaces(region, private_ip);
    -- The groups of interfaces other than an instance's primary one (whose groups are the
    -- instance's, in memberships).
    CREATE TABLE interface_memberships (
        interface_id  TEXT NOT NULL REFERENCES network_interfaces(id),
        group_id      TEXT NOT NULL REFERENCES security_groups(id),
        position      INTEGER NOT NULL,
        PRIMARY KEY (interface_id, group_id)
    );
    CREATE INDEX interface_memberships_by_group ON interface_memberships(group_id);
    "#,
    // 6: prefix lists and their entries; instances keep their `UserData`.
    r#"
    ALTER TABLE instances ADD COLUMN user_data TEXT NOT NULL DEFAULT '';
    CREATE TABLE prefix_lists (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        id              TEXT NOT NULL UNIQUE,
        account_id      INTEGER NOT NULL REFERENCES accounts(id),
        region          TEXT NOT NULL,
        name            TEXT NOT NULL,
        description     TEXT NOT NULL,
        address_family  TEXT NOT NULL,
        max_entries     INTEGER NOT NULL,
        created_at      TEXT NOT NULL
    );
    CREATE INDEX prefix_lists_by_owner ON prefix_lists(account_id, region);
    CREATE TABLE prefix_list_entries (
        list_id      TEXT NOT NULL REFERENCES prefix_lists(id),
        cidr         TEXT NOT NULL,
        description  TEXT NOT NULL,
        PRIMARY KEY (list_id, cidr)
    );
    "#,
    // 7: instances keep their `HostName`.
    r#"
    ALTER TABLE instances ADD COLUMN host_name TEXT NOT NULL DEFAULT '';
    "#,
    // 8: groups and instances belong to a resource group (`ResourceGroupId`, '' for none).
    r#"
    ALTER TABLE security_groups ADD COLUMN resource_group_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE instances ADD COLUMN resource_group_id TEXT NOT NULL DEFAULT '';
    "#,
    // 9: port range lists and their entries; rules may name one (`PortRangeListId`).
    r#"
    CREATE TABLE port_range_lists (
        seq                INTEGER PRIMARY KEY AUTOINCREMENT,
        id                 TEXT NOT NULL UNIQUE,
        account_id         INTEGER NOT NULL REFERENCES accounts(id),
        region             TEXT NOT NULL,
        name               TEXT NOT NULL,
        description        TEXT NOT NULL,
        max_entries        INTEGER NOT NULL,
        resource_group_id  TEXT NOT NULL,
        created_at         TEXT NOT NULL
    );
    CREATE INDEX port_range_lists_by_owner ON port_range_lists(account_id, region);
    CREATE TABLE port_range_list_entries (
        list_id      TEXT NOT NULL REFERENCES port_range_lists(id),
        port_range   TEXT NOT NULL,
        start_port   INTEGER NOT NULL,
        end_port     INTEGER NOT NULL,
        description  TEXT NOT NULL,
        PRIMARY KEY (list_id, port_range)
    );
    ALTER TABLE permissions ADD COLUMN port_range_list_id TEXT;
    "#,
    // 10: a secondary interface attached at creation may go with its instance; instances
    // keep the system disk they were asked for (`SystemDisk.*`, answered by `DescribeDisks`).
    r#"
    ALTER TABLE network_interfaces ADD COLUMN delete_on_release INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE instances ADD COLUMN system_disk_category TEXT NOT NULL DEFAULT 'cloud_essd';
    ALTER TABLE instances ADD COLUMN system_disk_size INTEGER NOT NULL DEFAULT 40;
    ALTER TABLE instances ADD COLUMN system_disk_name TEXT NOT NULL DEFAULT '';
    ALTER TABLE instances ADD COLUMN system_disk_description TEXT NOT NULL DEFAULT '';
    "#,
    // 11: secondary private addresses of interfaces (`AssignPrivateIpAddresses`), unique in
    // a VPC with the primary ones.
    r#"
    CREATE TABLE interface_addresses (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        interface_id  TEXT NOT NULL REFERENCES network_interfaces(id),
        region        TEXT NOT NULL,
        vpc_id        TEXT NOT NULL,
        address       TEXT NOT NULL,
        UNIQUE (interface_id, address)
    );
    CREATE INDEX interface_addresses_by_vpc ON interface_addresses(region, vpc_id, address);
    "#,
    // 12: `ClientToken` records keep digests of the token and of the request (a fixed size,
    // whatever the request carried) and expire (`CLIENT_TOKEN_DAYS`); the records written
    // before kept the request whole and are dropped (a retry across the upgrade runs again).
    r#"
    DELETE FROM client_tokens;
    ALTER TABLE client_tokens ADD COLUMN created_at TEXT NOT NULL DEFAULT '';
    "#,
    // 13: each host's agent credential (`IssueAgentToken`), kept as a SHA-256 digest.
    r#"
    CREATE TABLE agent_tokens (
        host_id     TEXT PRIMARY KEY,
        digest      TEXT NOT NULL UNIQUE,
        created_at  TEXT NOT NULL
    );
    "#,
    // 14: an account's instances and interfaces found by owner, so that reading one
    // account's share (its analysis, its listings) costs what the account holds, not what
    // the region does.
    r#"
    CREATE INDEX instances_by_owner ON instances(account_id, region);
    CREATE INDEX network_interfaces_by_owner ON network_interfaces(account_id, region);
    "#,
    // 15: the attributes of an instance that Stockade keeps and answers back without acting
    // on them (billing, spot market, placement, deletion protection), as a JSON object; and
    // an interface's `SourceDestCheck` (0: it may forward for others).
    r#"
    ALTER TABLE instances ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE network_interfaces ADD COLUMN source_dest_check INTEGER NOT NULL DEFAULT 1;
    "#,
    // 16: IPv4 prefixes delegated to interfaces (`Ipv4Prefix.N`) live beside the secondary
    // addresses, as rows whose `address` is the block's first address and `prefix_len` 28;
    // a secondary address is a row of length 32.
    r#"
    ALTER TABLE interface_addresses ADD COLUMN prefix_len INTEGER NOT NULL DEFAULT 32;
    "#,
    // 17: rule hit counts, summed over the hosts' agents (`record_hits`): per rule, and per
    // group for its implicit decisions (`subject` is the rule id, or `InnerAccessPolicy`,
    // `DefaultIngress`, `DefaultEgress`); and since when each region counts.
    r#"
    CREATE TABLE rule_hits (
        region     TEXT NOT NULL,
        subject    TEXT NOT NULL,
        group_id   TEXT NOT NULL,
        packets    INTEGER NOT NULL,
        bytes      INTEGER NOT NULL,
        first_hit  TEXT NOT NULL,
        last_hit   TEXT NOT NULL,
        PRIMARY KEY (region, subject, group_id)
    );
    CREATE INDEX rule_hits_by_group ON rule_hits(group_id);
    CREATE TABLE hit_counting (
        region  TEXT PRIMARY KEY,
        since   TEXT NOT NULL
    );
    "#,
];

/// Opens (creating if needed) the database file and brings its schema up to date.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted and overwritten content is zeroed, so a replaced secret leaves no copy in free
    // pages of the file.
    conn.pragma_update(None, "secure_delete", "ON")?;
    // Another process (`stockade account create` beside a running server) may hold the
    // write lock for a moment.
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Opens (creating if needed) the nonce store beside the database: its own file, so that
/// recording a nonce, which every request does, never waits for the command writer's lock.
/// `synchronous=NORMAL`: a recorded nonce survives the process being killed or restarted
/// (the WAL is in the OS's hands), which is what refusing replays after a restart needs;
/// only a power loss could forget the last ones, and the timestamp window still bounds
/// those to 15 minutes.
pub fn open_nonces(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS nonces (
            access_key  TEXT NOT NULL,
            nonce       TEXT NOT NULL,
            seen_at     INTEGER NOT NULL,
            PRIMARY KEY (access_key, nonce)
        );
        CREATE INDEX IF NOT EXISTS nonces_by_age ON nonces(seen_at);",
    )?;
    Ok(conn)
}

/// Opens a read-only connection to an existing, migrated database.
pub fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// The schema version this build writes.
pub fn schema_version() -> usize {
    MIGRATIONS.len()
}
