//! The Windows agent under Wine, against PostgreSQL, central and onshi-sim on Linux.
//!
//! `make test-windows` (scripts/windows.sh) builds `edge-agent.exe` for `x86_64-pc-windows-gnu`
//! and its MSI, puts the test-only `ProcessPrng` shim (tests/windows/processprng.c; Wine 8 has
//! no `bcryptprimitives.dll`) beside the test copy of the .exe, and runs this file with
//! `EDGE_AGENT_WINDOWS_EXE` and `EDGE_AGENT_WINDOWS_MSI` set. The agent runs as a Windows
//! program: its configuration names Windows paths (Wine's `Z:` drive), its control channel is
//! a named pipe, its key files are checked through their DACLs.

use std::collections::BTreeSet;
use std::path::PathBuf;

use e2e::proxy::Proxy;
use e2e::receipt::{await_result, put};
use e2e::{
    AgentSettings, AgentSite, Pki, TestDb, await_events, eventually, https_endpoint, sim_people,
    sim_terminal_command, site_code, start_central, start_central_with_env, start_sim,
    start_sim_terminal, wine_path,
};

fn from_env(name: &str) -> PathBuf {
    let path = std::env::var_os(name).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{name} is not set: run these tests with `make test-windows`, which builds the Windows agent")
    });
    assert!(
        path.exists(),
        "{name}={} does not exist: run `make test-windows`",
        path.display()
    );
    path
}

/// A clinic in Hiroshima.
fn clinic() -> String {
    site_code("341071236")
}

async fn lookups(agent: &AgentSite, people: &[e2e::SimPerson]) -> BTreeSet<String> {
    let mut shown = BTreeSet::new();
    for person in people {
        let output = agent
            .lookup(person)
            .await
            .expect("running edge-agent.exe lookup");
        assert!(
            output.status.success(),
            "lookup under Wine failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let reply: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        shown.insert(reply["event_id"].as_str().unwrap().to_string());
    }
    shown
}

#[tokio::test(flavor = "multi_thread")]
async fn the_windows_agent_records_streams_survives_a_kill_and_answers_over_its_pipe()
-> anyhow::Result<()> {
    let site = clinic();
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let sim = start_sim(&pki).await?;
    let proxy = Proxy::start(central.field("grpc").parse()?).await?;
    let agent_site = AgentSite::with_settings(
        &pki,
        &site,
        &format!("https://{}", proxy.addr()),
        &https_endpoint(&sim, "https"),
        AgentSettings {
            wine: Some(from_env("EDGE_AGENT_WINDOWS_EXE")),
            reconnect_max_ms: Some(500),
            ..AgentSettings::default()
        },
    )?;
    let agent = agent_site.start().await?;
    assert!(
        agent.field("control_socket").starts_with(r"\\.\pipe\"),
        "the control channel is a named pipe: {}",
        agent.ready
    );
    let people = sim_people("valid", 5).await?;

    // Direct mode against onshi-sim: each lookup recorded, then streamed to central.
    let mut shown = lookups(&agent_site, &people[..2]).await;
    let status = eventually("central to acknowledge the first lookups", || async {
        let s = agent_site.status().await.ok()?;
        (s["outbox_depth"] == 0 && s["last_acked_sequence"].as_u64()? >= 2).then_some(s)
    })
    .await;
    // `edge-agent status` over the pipe.
    assert_eq!(status["site_code"], site.as_str(), "{status}");
    assert_eq!(status["central_link"], "connected", "{status}");

    // Central unreachable: the lookups still answer and wait in the outbox...
    proxy.cut();
    shown.extend(lookups(&agent_site, &people[2..]).await);
    let status = agent_site.status().await?;
    assert!(status["outbox_depth"].as_u64() > Some(0), "{status}");
    // ...and the Wine process is killed (SIGKILL) with them unacknowledged.
    agent.kill().await?;

    // Restarted, the agent sends what it held; central holds each lookup exactly once.
    let _agent = agent_site.start().await?;
    proxy.restore(central.field("grpc").parse()?);
    eventually("the restarted agent to drain to central", || async {
        let s = agent_site.status().await.ok()?;
        (s["outbox_depth"] == 0 && s["last_acked_sequence"] == s["last_produced_sequence"])
            .then_some(())
    })
    .await;
    let rows = db
        .client()
        .await?
        .query(
            "SELECT event_id::text FROM events WHERE site_code = $1 AND kind = 'lookup'",
            &[&site],
        )
        .await?;
    let stored: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let unique: BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), unique.len(), "no lookup stored twice");
    assert_eq!(
        unique, shown,
        "every lookup the counter was shown, and nothing else"
    );
    let (intact, verdict) = e2e::central_verify(&db, &site).await?;
    assert!(
        intact,
        "the site's hash chain holds across the kill: {verdict}"
    );
    Ok(())
}

/// Terminal mode, as at a real site: `edge-agent.exe` (Wine) puts its requests in the
/// qualification terminal's `req` folder and takes the answers from `res`, and records the face
/// reader's results from `face`; the terminal is `onshi-sim terminal` (Linux) on the same folder,
/// which the agent names by its Wine path (`Z:\…`) as a Windows program names a share.
#[tokio::test(flavor = "multi_thread")]
async fn the_windows_agent_in_terminal_mode_records_lookups_through_the_terminal_folders()
-> anyhow::Result<()> {
    let site = clinic();
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let agent_site = AgentSite::with_settings(
        &pki,
        &site,
        &https_endpoint(&central, "grpc"),
        // Never used in terminal mode.
        "https://127.0.0.1:9",
        AgentSettings {
            wine: Some(from_env("EDGE_AGENT_WINDOWS_EXE")),
            ..AgentSettings::default()
        },
    )?;
    let folder = agent_site.dir().join("OQS");
    let _terminal = start_sim_terminal(&folder, &["--institution", &site]).await?;
    agent_site.use_terminal(&folder, 30_000)?;
    // Relay mode too: the receipt computer's folders (a share), which the agent names by
    // their Wine path.
    let share = agent_site.dir().join("share");
    agent_site.append_config(&format!(
        "[file_exchange]\nfolder = '{}'\nsettle_ms = 100\nincomplete_grace_ms = 2500\nrescan_ms = 500\n",
        wine_path(&share)
    ))?;
    let _agent = agent_site.start().await?;
    let people = sim_people("valid", 3).await?;

    // The counter's lookups go through the terminal's folders.
    let shown = lookups(&agent_site, &people[..2]).await;
    // The receipt computer asks under a Japanese file name (as a Windows program writes it:
    // the share keeps it in UTF-16, Wine's Z: drive in UTF-8) and gets its answer under the
    // matching name.
    let request = "OQSsiquc01req_受付_山田.xml";
    put(
        &share.join("req"),
        request,
        &e2e::receipt::eligibility(&site, &people[2], "RC-0001")?,
    )?;
    let answer = await_result(&share.join("res"), "OQSsiquc01res_受付_山田.xml").await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.contains("RC-0001"),
        "the answer to that request: {answer}"
    );
    for sub in ["req", "res"] {
        let left: Vec<_> = std::fs::read_dir(folder.join(sub))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .filter(|n| !n.to_string_lossy().starts_with('.'))
            .collect();
        assert!(left.is_empty(), "nothing left in {sub}: {left:?}");
    }
    // A patient on the face reader: the terminal's result file, recorded once.
    sim_terminal_command(
        &folder,
        &["present", "--holder", "0", "--consent", "drug,checkup"],
    )
    .await?;
    // Another under a Japanese name (a terminal may name its files so): written aside, then
    // renamed into `face` whole. Windows hands the agent the name in UTF-16, Wine from UTF-8.
    let aside = agent_site.dir().join("aside");
    let written = sim_terminal_command(
        &aside,
        &[
            "present",
            "--holder",
            "1",
            "--institution",
            &site,
            "--seed",
            e2e::SIM_SEED,
            "--population",
            e2e::SIM_POPULATION,
        ],
    )
    .await?;
    let written: serde_json::Value = serde_json::from_str(written.trim())?;
    let japanese = folder
        .join("face")
        .join("OQSsiquc01res_face_顔認証_受付１_20261205093000.xml");
    std::fs::rename(written["face"].as_str().unwrap(), &japanese)?;

    let stored = await_events(&db, &site, "lookup", 5).await;
    let from_counter: BTreeSet<String> = stored
        .iter()
        .filter(|l| l["source"] == "counter")
        .map(|l| l["outcome"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(from_counter, BTreeSet::from(["valid".to_string()]));
    let rows = db
        .client()
        .await?
        .query(
            "SELECT event_id::text, body::text FROM events WHERE site_code = $1 AND kind = 'lookup'",
            &[&site],
        )
        .await?;
    let ids: Vec<String> = rows
        .iter()
        .filter(|r| {
            serde_json::from_str::<serde_json::Value>(r.get(1))
                .is_ok_and(|body| body["source"] == "counter")
        })
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids.len(), shown.len(), "no lookup stored twice: {ids:?}");
    assert_eq!(
        ids.into_iter().collect::<BTreeSet<_>>(),
        shown,
        "every lookup the counter was shown"
    );
    let by_face: Vec<_> = stored
        .iter()
        .filter(|l| l["source"] == "face_reader")
        .collect();
    assert_eq!(by_face.len(), 2, "each face result once: {stored:?}");
    let relayed = stored
        .iter()
        .filter(|l| l["source"] != "counter" && l["source"] != "face_reader")
        .count();
    assert_eq!(relayed, 1, "the relayed request once: {stored:?}");
    assert!(
        by_face.iter().all(|l| l["identity_verification"] == "face"),
        "{by_face:?}"
    );
    // The face files are the terminal's: left as written, the Japanese name too.
    assert!(japanese.exists());
    // The terminal's health is the national link, over the named pipe.
    let status = agent_site.status().await?;
    let national = status["national_link"].as_str().unwrap_or_default();
    assert!(
        national.contains("answered") || national.starts_with("slow"),
        "{status}"
    );
    Ok(())
}

/// The certificate inventory where Windows keeps certificates: a terminal certificate imported
/// into the machine's `MY` store (through `CertAddEncodedCertificateToStore`, by the test helper
/// tests/windows/certstore-add.c, as an administrator's import would) and another in a PKCS#12
/// file with a password (made by `openssl pkcs12 -export`) reach central with their expiry.
#[tokio::test(flavor = "multi_thread")]
async fn the_windows_agent_inventories_the_certificate_store_and_a_pkcs12_file()
-> anyhow::Result<()> {
    use fleet_tls::identity::CertificateSummary;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let site = clinic();
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    // Central projects inventories into its listing every second, not every 30 s.
    let central = start_central_with_env(&pki, &db, &[("CENTRAL_ALERT_CHECK_SECS", "1")]).await?;
    let agent_site = AgentSite::with_settings(
        &pki,
        &site,
        &https_endpoint(&central, "grpc"),
        "https://127.0.0.1:9",
        AgentSettings {
            wine: Some(from_env("EDGE_AGENT_WINDOWS_EXE")),
            ..AgentSettings::default()
        },
    )?;
    let issue =
        |terminal: &str, days: i64| -> anyhow::Result<(PathBuf, PathBuf, CertificateSummary)> {
            let (cert, key) = fleet_tls::devpki::issue_terminal_valid_for(
                pki.paths.root(),
                &site,
                terminal,
                time::Duration::days(days),
            )?;
            let der = CertificateDer::from_pem_file(&cert)?;
            Ok((cert, key, CertificateSummary::from_der(&der)?))
        };

    // Imported into the machine's personal store.
    let (in_store, _, store_summary) = issue("T02", 20)?;
    let der_file = agent_site.dir().join("imported.der");
    std::fs::write(
        &der_file,
        CertificateDer::from_pem_file(&in_store)?.as_ref(),
    )?;
    let output = tokio::process::Command::new("wine")
        .arg(from_env("EDGE_AGENT_WINDOWS_CERTSTORE_ADD"))
        .args(["local_machine", "MY"])
        .arg(wine_path(&der_file))
        .output()
        .await?;
    assert!(
        output.status.success(),
        "certstore-add under Wine: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // A PKCS#12 file as the portal hands out, its password in a file of its own.
    let (in_p12, p12_key, p12_summary) = issue("T03", 40)?;
    let p12 = agent_site.dir().join("terminal.p12");
    let password_file = agent_site.dir().join("terminal.p12.pass");
    // OpenSSL takes the first line without its `\n` (a `\r` would stay in the password).
    std::fs::write(&password_file, "端末-secret\n")?;
    let output = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-in"])
        .arg(&in_p12)
        .arg("-inkey")
        .arg(&p12_key)
        .arg("-passout")
        .arg(format!("file:{}", password_file.display()))
        .arg("-out")
        .arg(&p12)
        .output()
        .expect("openssl (installed by scripts/ensure-deps.sh windows)");
    assert!(
        output.status.success(),
        "openssl pkcs12: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    agent_site.append_config(&format!(
        "[certificates]\ncheck_interval_secs = 1\n\
         [[certificates.watch]]\npath = '{}'\nrole = \"terminal\"\nformat = \"p12\"\npassword_file = '{}'\n\
         [[certificates.store]]\nlocation = \"local_machine\"\nname = \"MY\"\nrole = \"terminal\"\n\
         subject_contains = \"terminal {site}\"\n",
        wine_path(&p12),
        wine_path(&password_file),
    ))?;
    let _agent = agent_site.start().await?;

    let (operator_cert, operator_key) = pki.paths.operator("e2e");
    let listed = eventually("central to list both certificates", || {
        let (ca, cert, key) = (pki.paths.chain_ca(), &operator_cert, &operator_key);
        let (addr, path) = (
            central.field("http"),
            format!("/api/v1/certificates?site={site}"),
        );
        let wanted = [&store_summary, &p12_summary].map(|s| s.sha256_fingerprint.clone());
        async move {
            let (200, body) = e2e::http::get_json(&ca, cert, key, &addr, &path)
                .await
                .ok()?
            else {
                return None;
            };
            let rows = body.as_array()?.clone();
            wanted
                .iter()
                .all(|f| rows.iter().any(|r| r["sha256_fingerprint"] == f.as_str()))
                .then_some(rows)
        }
    })
    .await;
    for (summary, source, days) in [
        (&store_summary, r"store:LocalMachine\MY".to_string(), 20),
        (&p12_summary, wine_path(&p12), 40),
    ] {
        let row = listed
            .iter()
            .find(|r| r["sha256_fingerprint"] == summary.sha256_fingerprint.as_str())
            .unwrap();
        assert_eq!(row["source"], source.as_str(), "{row}");
        assert_eq!(row["role"], "terminal", "{row}");
        assert_eq!(row["missing"], false, "{row}");
        let not_after = time::OffsetDateTime::parse(
            row["not_after"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )?;
        assert_eq!(not_after, summary.not_after, "the right expiry: {row}");
        let left = row["days_to_expiry"].as_i64().unwrap();
        assert!((days - 1..=days).contains(&left), "{left} days: {row}");
    }
    Ok(())
}

/// What Wine supports: Wine 8 presents a file's DACL made from its unix mode, the "other" read
/// bit as an entry granting Everyone read (seen: `(A;;0x1200a9;;;WD)` for mode 0644), and maps
/// a DACL set through the API back to a mode others can read. `icacls` is not usable in Wine 8,
/// so the key is made world-readable by its mode here; the agent (a Windows program) reads it
/// through `GetNamedSecurityInfoW` as a DACL letting Everyone read it. The unit test
/// `owner_only::a_file_whose_acl_lets_everyone_read_is_exposed` grants Everyone read through
/// `SetNamedSecurityInfoW` instead, under Wine as well.
#[tokio::test(flavor = "multi_thread")]
async fn the_windows_agent_refuses_an_outbox_key_everyone_can_read() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let site = clinic();
    let pki = Pki::new(&[&site])?;
    let agent_site = AgentSite::with_settings(
        &pki,
        &site,
        "https://127.0.0.1:1",
        "https://127.0.0.1:1",
        AgentSettings {
            wine: Some(from_env("EDGE_AGENT_WINDOWS_EXE")),
            ..AgentSettings::default()
        },
    )?;
    let data = agent_site.dir().join("data");
    std::fs::create_dir_all(&data)?;
    let key = data.join("outbox.key");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32)))?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))?;

    let mut command = agent_site.command();
    command.arg("run");
    let output = tokio::time::timeout(e2e::patience(), command.output())
        .await
        .expect("the agent must refuse to start, not run")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started with a readable key");
    assert!(
        stderr.contains("can be read by other users") && stderr.contains("Everyone"),
        "the refusal names who can read the key: {stderr}"
    );
    assert!(stderr.contains("icacls"), "and how to fix it: {stderr}");
    Ok(())
}

/// The MSI, read with msitools' `msiinfo`: the binary under Program Files, the service, the
/// folders under ProgramData, and the configure step.
#[test]
fn the_msi_installs_the_binary_the_service_and_the_agent_folders() {
    let msi = from_env("EDGE_AGENT_WINDOWS_MSI");
    let table = |name: &str| {
        let output = std::process::Command::new("msiinfo")
            .arg("export")
            .arg(&msi)
            .arg(name)
            .output()
            .expect("msiinfo (msitools) is installed by make test-windows");
        assert!(output.status.success(), "msiinfo export {name}");
        // Rows after the three header lines (names, types, key), tab-separated.
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .skip(3)
            .map(|l| l.split('\t').map(str::to_string).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    let row = |rows: &[Vec<String>], first: &str| {
        rows.iter()
            .find(|r| r[0] == first)
            .unwrap_or_else(|| panic!("no row {first} in {rows:?}"))
            .clone()
    };

    let directories = table("Directory");
    let parent = |id: &str| row(&directories, id);
    assert_eq!(
        parent("INSTALLDIR")[1..],
        ["ProgramFiles64Folder", "onshi-fleet"]
    );
    assert_eq!(
        parent("FLEETDIR")[1..],
        ["CommonAppDataFolder", "onshi-fleet"]
    );
    assert_eq!(parent("AGENTDIR")[1..], ["FLEETDIR", "agent"]);
    for (id, name) in [
        ("KEYSDIR", "keys"),
        ("DATADIR", "data"),
        ("LOGSDIR", "logs"),
    ] {
        assert_eq!(parent(id)[1..], ["AGENTDIR", name]);
    }
    let created: BTreeSet<String> = table("CreateFolder")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(
        created,
        ["AGENTDIR", "DATADIR", "KEYSDIR", "LOGSDIR"]
            .map(String::from)
            .into()
    );
    let file = row(&table("File"), "EdgeAgentExe");
    assert!(file[2].ends_with("edge-agent.exe"), "{file:?}");
    assert_eq!(row(&table("Component"), "AgentExe")[2], "INSTALLDIR");

    // ServiceInstall: Name, DisplayName, ServiceType, StartType, ErrorControl, LoadOrderGroup,
    // Dependencies, StartName, Password, Arguments, Component_, Description.
    let service = row(&table("ServiceInstall"), "AgentService");
    assert_eq!(service[1], "onshi-fleet-agent");
    assert_eq!(service[3], "16", "own process");
    assert_eq!(service[4], "2", "automatic start");
    assert!(
        service[7].starts_with("SCardSvr"),
        "after the smart-card service: {service:?}"
    );
    assert_eq!(
        service[8], r"NT SERVICE\onshi-fleet-agent",
        "its virtual account"
    );
    assert_eq!(
        service[10],
        r#"--config "[AGENTDIR]agent.toml" service run"#
    );
    let control = row(&table("ServiceControl"), "AgentServiceControl");
    assert_eq!(
        control[2], "162",
        "stopped on install and uninstall, removed on uninstall"
    );
    let configure = row(&table("CustomAction"), "ConfigureService");
    assert_eq!(configure[2..4], ["EdgeAgentExe", "service configure"]);
}
