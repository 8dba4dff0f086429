//! Tap mode end to end (issue 14 item 4): the receipt computer (the test) talks to the
//! qualification terminal (`onshi-sim terminal`) directly through its folders; the real
//! `edge-agent` process, `mode = "tap"`, only reads those folders and records each exchange once
//! at central (PostgreSQL), without changing a byte there.

use std::path::{Path, PathBuf};

use e2e::receipt::{self, await_result, put, snapshot};
use e2e::{
    AgentSite, Pki, Running, TestDb, await_events, eventually, https_endpoint, sim_people,
    sim_terminal_command, start_central, start_sim_terminal, stored_events,
};
use onshi_domain::codes::SegmentOfResult;
use onshi_domain::xml::{BulkInquiryAccepted, BulkResult};

/// A real Tokyo clinic's code (the corpus's).
const CLINIC: &str = "1310110049";

/// The agent's answer timeout: a request unanswered this long is recorded as such.
const TIMEOUT_MS: u64 = 3_000;

struct Stack {
    db: TestDb,
    _pki: Pki,
    _central: Running,
    _terminal: Running,
    site: AgentSite,
    folder: PathBuf,
}

impl Stack {
    /// Central, the sim terminal and a tap-mode agent's configuration (not started).
    async fn new() -> anyhow::Result<Self> {
        let pki = Pki::new(&[CLINIC])?;
        let db = TestDb::create().await?;
        let central = start_central(&pki, &db).await?;
        let site = AgentSite::new(
            &pki,
            CLINIC,
            &https_endpoint(&central, "grpc"),
            "https://127.0.0.1:9",
        )?;
        let folder = site.dir().join("OQS");
        let terminal = start_sim_terminal(&folder, &["--institution", CLINIC]).await?;
        site.use_terminal(&folder, TIMEOUT_MS)?;
        site.edit_config(
            "transport = \"terminal\"",
            "transport = \"terminal\"\nmode = \"tap\"",
        )?;
        Ok(Self {
            db,
            _pki: pki,
            _central: central,
            _terminal: terminal,
            site,
            folder,
        })
    }

    fn req(&self) -> PathBuf {
        self.folder.join("req")
    }

    /// The receipt computer writes a request while the agent watches. The terminal takes a
    /// request within milliseconds, and a tap that never saw one cannot tell whose a drug or
    /// checkup result is; so that the test does not depend on which of the two processes the
    /// machine schedules first, the terminal holds its requests (silent) until the agent's
    /// journal shows it read this one.
    async fn put_seen(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        sim_terminal_command(&self.folder, &["knobs", "--silent"]).await?;
        put(&self.req(), name, bytes)?;
        let config = edge_agent::config::AgentConfig::load(
            &self.site.config,
            &std::collections::HashMap::new(),
        )?;
        let journal = config.terminal_journal_path();
        eventually("the tap to read the request", || async {
            let db = rusqlite::Connection::open_with_flags(
                &journal,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .ok()?;
            db.query_row("SELECT 1 FROM tap_requests WHERE name = ?1", [name], |_| {
                Ok(())
            })
            .ok()
        })
        .await;
        sim_terminal_command(&self.folder, &["knobs", "--silent", "false"]).await?;
        Ok(())
    }

    fn res(&self) -> PathBuf {
        self.folder.join("res")
    }

    fn contents(&self) -> anyhow::Result<std::collections::BTreeMap<String, Vec<u8>>> {
        snapshot(&self.folder, &["req", "res", "face"])
    }

    /// The lookups central holds with `source`.
    async fn lookups_from(&self, source: &str) -> Vec<serde_json::Value> {
        stored_events(&self.db, CLINIC, "lookup")
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|l| l["source"] == source)
            .collect()
    }

    async fn await_lookups_from(&self, source: &str, n: usize) -> Vec<serde_json::Value> {
        eventually(&format!("{n} lookups from {source} at central"), || async {
            let found = self.lookups_from(source).await;
            (found.len() >= n).then_some(found)
        })
        .await
    }
}

/// Folders (and their files) without write permission for anyone: as a non-root user the agent
/// could not write there if it tried; as root (CI) the mode does not bind it, and the contents
/// are compared instead.
fn read_only(dir: &Path, on: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let (dir_mode, file_mode) = if on { (0o555, 0o444) } else { (0o755, 0o644) };
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            read_only(&path, on)?;
        } else {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file_mode))?;
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tap_records_the_receipt_computer_s_exchanges_once_and_never_touches_the_folders()
-> anyhow::Result<()> {
    let stack = Stack::new().await?;
    let valid = sim_people("valid", 6).await?;

    // Before the agent runs: the receipt computer asks, the terminal answers.
    put(
        &stack.req(),
        "OQSsiquc01req_202612010001.xml",
        &receipt::eligibility(CLINIC, &valid[0], "RC-0001")?,
    )?;
    await_result(&stack.res(), "OQSsiquc01res_202612010001.xml").await;

    // The agent starts on folders nobody may write to, and records what is already there.
    for sub in ["req", "res", "face"] {
        read_only(&stack.folder.join(sub), true)?;
    }
    let before = stack.contents()?;
    let mut agent = stack.site.start().await?;
    let first = stack.await_lookups_from("terminal_tap", 1).await;
    assert_eq!(first[0]["outcome"], "valid", "{}", first[0]);
    assert_eq!(first[0]["route"], "insurance_card");
    assert!(first[0]["patient_ref"].is_string(), "{}", first[0]);
    let after = stack.contents()?;
    assert_eq!(
        after,
        before,
        "the terminal's folders changed: before {}, after {}",
        receipt::describe(&before),
        receipt::describe(&after)
    );
    for sub in ["req", "res", "face"] {
        read_only(&stack.folder.join(sub), false)?;
    }
    // The counter cannot ask in tap mode: refused before anything is recorded.
    let refused = stack.site.lookup(&valid[1]).await?;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("tap mode"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // While the agent watches: a patient on the face reader agrees to share drug information,
    // then the receipt computer confirms two people, asks for the drug information and sends a
    // national batch (both steps).
    let everyone = sim_people("any", 200).await?;
    let holder = everyone
        .iter()
        .position(|p| p.number == valid[1].number && p.insurer_number == valid[1].insurer_number)
        .expect("the valid person's index");
    sim_terminal_command(
        &stack.folder,
        &[
            "present",
            "--holder",
            &holder.to_string(),
            "--consent",
            "drug,checkup",
        ],
    )
    .await?;
    for (i, person) in valid[1..3].iter().enumerate() {
        let suffix = format!("20261201{:04}", i + 2);
        stack
            .put_seen(
                &format!("OQSsiquc01req_{suffix}.xml"),
                &receipt::eligibility(CLINIC, person, &format!("RC-{suffix}"))?,
            )
            .await?;
        await_result(&stack.res(), &format!("OQSsiquc01res_{suffix}.xml")).await;
    }
    stack
        .put_seen(
            "YZKsiquc01req_02261201093000001.xml",
            &receipt::drug(CLINIC, &valid[1], "RC-DRUG")?,
        )
        .await?;
    await_result(&stack.res(), "YZKsiquc01res_02261201093000001.xml").await;
    stack
        .put_seen(
            "TKKsiquc01req_02261201093000002.xml",
            &receipt::checkup(CLINIC, &valid[1], "RC-CHECKUP")?,
        )
        .await?;
    await_result(&stack.res(), "TKKsiquc01res_02261201093000002.xml").await;
    // A checkup exchange whose request the tap never sees (as when the terminal takes it
    // first): the agent is down (kill -9) while the receipt computer asks and the terminal
    // answers. The restarted agent records it from the result alone.
    agent.kill().await?;
    put(
        &stack.req(),
        "TKKsiquc01req_02261201093000003.xml",
        &receipt::checkup(CLINIC, &valid[1], "RC-UNSEEN")?,
    )?;
    await_result(&stack.res(), "TKKsiquc01res_02261201093000003.xml").await;
    agent = stack.site.start().await?;
    stack
        .put_seen(
            "OQSmuquc01req_202612010010.xml",
            &receipt::batch(CLINIC, &valid[3..5], "RC-BATCH")?,
        )
        .await?;
    let accepted = await_result(&stack.res(), "OQSmuquc01res_202612010010.xml").await;
    let reception = BulkInquiryAccepted::from_xml(&accepted)?
        .reception_number
        .expect("the batch accepted");
    let mut polls = 0;
    loop {
        polls += 1;
        let name = format!("OQSmuquc02req_2026120100{:02}.xml", 10 + polls);
        stack
            .put_seen(&name, &receipt::batch_fetch(CLINIC, &reception)?)
            .await?;
        let fetched = await_result(&stack.res(), &name.replace("req_", "res_")).await;
        if BulkResult::from_xml(&fetched)?.header.segment_of_result == SegmentOfResult::Normal {
            break;
        }
        assert!(polls < 20, "the batch results never came");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }

    // Each exchange once: the three confirmations, one per batch row, the face reader's lookup
    // and consent (as before tap mode), one drug view with no staff or policy.
    let tapped = stack.await_lookups_from("terminal_tap", 5).await;
    let batch_rows: Vec<_> = tapped
        .iter()
        .filter(|l| l["batch_id"] == reception.as_str())
        .collect();
    assert_eq!(batch_rows.len(), 2, "{tapped:?}");
    assert!(tapped.iter().all(|l| l["outcome"] == "valid"), "{tapped:?}");
    let face = stack.await_lookups_from("face_reader", 1).await;
    assert_eq!(face[0]["route"], "my_number_card");
    // The drug and checkup views paired with their requests are the card's patient; the one
    // recorded from the result alone is the person the result names (another reference).
    let views = await_events(&stack.db, CLINIC, "info_view", 3).await;
    for view in &views {
        assert_eq!(view["source"], "terminal_tap", "{view}");
        assert_eq!(view["allowed"], true, "{view}");
        assert!(view["staff_role"].is_null(), "{view}");
    }
    let categories: Vec<&str> = views
        .iter()
        .filter_map(|v| v["category"].as_str())
        .collect();
    assert_eq!(categories, ["drug", "checkup", "checkup"], "{views:?}");
    assert_eq!(
        views[0]["patient_ref"], views[1]["patient_ref"],
        "{views:?}"
    );
    assert_ne!(
        views[1]["patient_ref"], views[2]["patient_ref"],
        "{views:?}"
    );
    await_events(&stack.db, CLINIC, "consent", 1).await;

    // The terminal goes silent: the receipt computer's next request is never answered, and is
    // recorded as such after the timeout; central sees the terminal down.
    sim_terminal_command(&stack.folder, &["knobs", "--silent", "true"]).await?;
    put(
        &stack.req(),
        "OQSsiquc01req_202612010099.xml",
        &receipt::eligibility(CLINIC, &valid[5], "RC-0099")?,
    )?;
    let unanswered = eventually("the unanswered request at central", || async {
        stack
            .lookups_from("terminal_tap")
            .await
            .into_iter()
            .find(|l| l["outcome"] == "unreachable")
    })
    .await;
    assert!(
        unanswered["latency_ms"].as_u64().unwrap_or(0) >= TIMEOUT_MS,
        "{unanswered}"
    );
    eventually("the terminal link down at central", || async {
        let links = stored_events(&stack.db, CLINIC, "link_change").await.ok()?;
        links
            .iter()
            .any(|l| l["target"] == "terminal" && l["state"] == "down")
            .then_some(())
    })
    .await;
    let status = stack.site.status().await?;
    let national = status["national_link"].as_str().unwrap_or_default();
    assert!(
        national.contains("silent") && national.contains("tap mode"),
        "{status}"
    );

    // kill -9 and a restart: nothing is recorded again, nothing is written.
    let before = stack.contents()?;
    let counted = (
        stack.lookups_from("terminal_tap").await.len(),
        stored_events(&stack.db, CLINIC, "info_view").await?.len(),
        stored_events(&stack.db, CLINIC, "lookup").await?.len(),
    );
    assert_eq!(
        counted,
        (6, 3, 7),
        "three confirmations, two rows, one unanswered; three views; the face lookup"
    );
    agent.kill().await?;
    let _agent = stack.site.start().await?;
    // The request it recorded as unanswered still waits in `req`: the terminal is still silent.
    eventually("the restarted agent to see the terminal silent", || async {
        let status = stack.site.status().await.ok()?;
        status["national_link"]
            .as_str()?
            .contains("silent")
            .then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        (
            stack.lookups_from("terminal_tap").await.len(),
            stored_events(&stack.db, CLINIC, "info_view").await?.len(),
            stored_events(&stack.db, CLINIC, "lookup").await?.len(),
        ),
        counted,
        "each exchange recorded once across the restart"
    );
    assert_eq!(
        stack.contents()?,
        before,
        "the restarted agent wrote nothing"
    );
    Ok(())
}
