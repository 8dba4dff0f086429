//! Relay mode end to end (issue 14 item 3): the receipt computer (the test) writes its requests
//! into the agent's file-exchange folders; the real `edge-agent` process (`transport =
//! "terminal"`) passes each one to the qualification terminal (`onshi-sim terminal`) and the
//! answer back byte for byte, recording each once at central (PostgreSQL).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use e2e::receipt::{self, await_result, put};
use e2e::{
    AgentSite, Pki, Running, SimPerson, TestDb, await_events, eventually, https_endpoint,
    sim_people, sim_terminal_command, start_central, start_sim_terminal, stored_events,
};
use onshi_domain::codes::SegmentOfResult;
use onshi_domain::xml::{BulkInquiryAccepted, BulkResult};

/// A real Tokyo clinic's code (the corpus's).
const CLINIC: &str = "1310110049";

struct Stack {
    db: TestDb,
    _pki: Pki,
    _central: Running,
    _terminal: Running,
    site: AgentSite,
    /// The terminal's base folder.
    folder: PathBuf,
    /// The receipt computer's folders (the agent's file exchange).
    share: PathBuf,
    /// Every result the terminal wrote, as written (`--copy-results`).
    copies: PathBuf,
}

impl Stack {
    async fn start() -> anyhow::Result<(Self, Running)> {
        Self::start_with(&[]).await
    }

    /// With `sim_flags` for the terminal too (e.g. `--zip-batch`).
    async fn start_with(sim_flags: &[&str]) -> anyhow::Result<(Self, Running)> {
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
        let copies = site.dir().join("terminal-wrote");
        let copies_flag = copies.display().to_string();
        let mut flags = vec!["--institution", CLINIC, "--copy-results", &copies_flag];
        flags.extend_from_slice(sim_flags);
        let terminal = start_sim_terminal(&folder, &flags).await?;
        site.use_terminal(&folder, 10_000)?;
        let share = site.dir().join("share");
        site.append_config(&format!(
            "[file_exchange]\nfolder = \"{}\"\nsettle_ms = 100\nincomplete_grace_ms = 2500\nrescan_ms = 500\n",
            share.display()
        ))?;
        let agent = site.start().await?;
        Ok((
            Self {
                db,
                _pki: pki,
                _central: central,
                _terminal: terminal,
                site,
                folder,
                share,
                copies,
            },
            agent,
        ))
    }

    /// The receipt computer asks: `name` into its `req`, and waits for the answer in its `res`.
    async fn ask(&self, name: &str, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
        put(&self.share.join("req"), name, bytes)?;
        Ok(await_result(&self.share.join("res"), &name.replace("req_", "res_")).await)
    }

    /// What the terminal wrote, by its own file names.
    fn terminal_wrote(&self) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
        receipt::snapshot(&self.copies, &[""])
    }

    async fn lookups_from(&self, source: &str) -> Vec<serde_json::Value> {
        stored_events(&self.db, CLINIC, "lookup")
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|l| l["source"] == source)
            .collect()
    }
}

/// The answer the receipt computer got is one the terminal wrote, byte for byte.
fn passed_through(
    got: &[u8],
    wrote: &BTreeMap<String, Vec<u8>>,
    what: &str,
) -> anyhow::Result<String> {
    let found: Vec<&String> = wrote
        .iter()
        .filter(|(_, bytes)| bytes.as_slice() == got)
        .map(|(name, _)| name)
        .collect();
    anyhow::ensure!(
        found.len() == 1,
        "{what}: the receipt computer's result is not exactly one of the terminal's {} results (matches {found:?})",
        wrote.len()
    );
    Ok(found[0].clone())
}

fn holder_index(everyone: &[SimPerson], person: &SimPerson) -> usize {
    everyone
        .iter()
        .position(|p| p.number == person.number && p.insurer_number == person.insurer_number)
        .expect("the person's index in the population")
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_is_relayed_byte_for_byte_and_recorded_once() -> anyhow::Result<()> {
    let (stack, _agent) = Stack::start().await?;
    let valid = sim_people("valid", 4).await?;
    let everyone = sim_people("any", 200).await?;

    // Eligibility.
    let got = stack
        .ask(
            "OQSsiquc01req_202612010001.xml",
            &receipt::eligibility(CLINIC, &valid[0], "RC-0001")?,
        )
        .await?;
    passed_through(&got, &stack.terminal_wrote()?, "OQSsiquc01")?;

    // Drug and checkup information for a patient who consented on the face reader.
    sim_terminal_command(
        &stack.folder,
        &[
            "present",
            "--holder",
            &holder_index(&everyone, &valid[1]).to_string(),
            "--consent",
            "drug,checkup",
        ],
    )
    .await?;
    await_events(&stack.db, CLINIC, "consent", 1).await;
    let got = stack
        .ask(
            "YZKsiquc01req_02261201093000001.xml",
            &receipt::drug(CLINIC, &valid[1], "RC-DRUG")?,
        )
        .await?;
    passed_through(&got, &stack.terminal_wrote()?, "YZKsiquc01")?;
    let got = stack
        .ask(
            "TKKsiquc01req_02261201093000002.xml",
            &receipt::checkup(CLINIC, &valid[1], "RC-CHECKUP")?,
        )
        .await?;
    passed_through(&got, &stack.terminal_wrote()?, "TKKsiquc01")?;

    // The national batch, both steps, polled until the results are in.
    let got = stack
        .ask(
            "OQSmuquc01req_202612010010.xml",
            &receipt::batch(CLINIC, &valid[2..4], "RC-BATCH")?,
        )
        .await?;
    passed_through(&got, &stack.terminal_wrote()?, "OQSmuquc01")?;
    let reception = BulkInquiryAccepted::from_xml(&got)?
        .reception_number
        .expect("the batch accepted");
    let mut polls = 0;
    loop {
        polls += 1;
        let got = stack
            .ask(
                &format!("OQSmuquc02req_2026120100{:02}.xml", 10 + polls),
                &receipt::batch_fetch(CLINIC, &reception)?,
            )
            .await?;
        passed_through(&got, &stack.terminal_wrote()?, "OQSmuquc02")?;
        if BulkResult::from_xml(&got)?.header.segment_of_result == SegmentOfResult::Normal {
            break;
        }
        assert!(polls < 20, "the batch results never came");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }

    // Recorded once each, as the agent's own paths record them: one lookup per eligibility
    // request and per batch row, one view per information request (no staff or policy), and
    // the face reader's lookup and consent.
    let relayed = eventually("the relayed lookups at central", || async {
        let found = stack.lookups_from("file_exchange").await;
        (found.len() >= 3).then_some(found)
    })
    .await;
    let views = await_events(&stack.db, CLINIC, "info_view", 2).await;
    for view in &views {
        assert_eq!(view["source"], "file_exchange", "{view}");
        assert_eq!(view["allowed"], true, "{view}");
        assert!(view["staff_id"].is_null(), "{view}");
    }
    assert_eq!(
        relayed
            .iter()
            .filter(|l| l["batch_id"] == reception.as_str())
            .count(),
        2,
        "{relayed:?}"
    );
    assert!(
        relayed.iter().all(|l| l["outcome"] == "valid"),
        "{relayed:?}"
    );
    // Give the agent time to record anything twice, then count.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(stack.lookups_from("file_exchange").await.len(), 3);
    assert_eq!(
        stored_events(&stack.db, CLINIC, "info_view").await?.len(),
        2
    );
    assert_eq!(
        stack.lookups_from("face_reader").await.len(),
        1,
        "the face lookup"
    );

    // Every request archived, nothing left anywhere: the terminal's folders are empty (the
    // agent took every result), the file exchange's work folder too.
    eventually("every request archived", || async {
        (files_in(&stack.share.join("archive")).len() == 4 + polls
            && files_in(&stack.share.join("work")).is_empty())
        .then_some(())
    })
    .await;
    assert!(files_in(&stack.folder.join("req")).is_empty());
    assert!(files_in(&stack.folder.join("res")).is_empty());
    Ok(())
}

/// The terminal zips the batch results (`--zip-batch`): the receipt computer gets the archive
/// exactly as the terminal wrote it, and the agent reads inside it to record each row once.
#[tokio::test(flavor = "multi_thread")]
async fn a_zipped_batch_result_is_passed_back_as_written_and_its_rows_recorded()
-> anyhow::Result<()> {
    let (stack, _agent) = Stack::start_with(&["--zip-batch"]).await?;
    let valid = sim_people("valid", 2).await?;
    let got = stack
        .ask(
            "OQSmuquc01req_202612010020.xml",
            &receipt::batch(CLINIC, &valid, "RC-ZIP")?,
        )
        .await?;
    let reception = BulkInquiryAccepted::from_xml(&got)?
        .reception_number
        .expect("the batch accepted");
    let mut polls = 0;
    let zipped = loop {
        polls += 1;
        let got = stack
            .ask(
                &format!("OQSmuquc02req_2026120100{:02}.xml", 20 + polls),
                &receipt::batch_fetch(CLINIC, &reception)?,
            )
            .await?;
        passed_through(&got, &stack.terminal_wrote()?, "OQSmuquc02")?;
        if onshi_domain::zip::is_zip(&got) {
            break got;
        }
        assert!(polls < 20, "the batch results never came");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    let (_, xml) = onshi_domain::zip::read_xml_entry(&zipped, 1 << 24)?;
    assert_eq!(
        BulkResult::from_xml(&xml)?.header.segment_of_result,
        SegmentOfResult::Normal
    );
    let rows = eventually("the zipped batch's rows at central", || async {
        let found = stack.lookups_from("file_exchange").await;
        (found.len() >= 2).then_some(found)
    })
    .await;
    assert!(
        rows.iter()
            .all(|l| l["batch_id"] == reception.as_str() && l["outcome"] == "valid"),
        "{rows:?}"
    );
    assert_eq!(rows.len(), 2, "each row once: {rows:?}");
    Ok(())
}

/// kill -9 after the terminal's answer is journaled, before anything is recorded: at start the
/// answer is recorded once and passed back, and nothing is asked twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_relayed_answer_journaled_before_a_crash_is_recorded_once_and_passed_back()
-> anyhow::Result<()> {
    let (stack, agent) = Stack::start().await?;
    agent.kill().await?;
    let crashing = stack
        .site
        .start_with_env(&[("EDGE_AGENT_FAULT", "abort-after-answer")])
        .await?;
    let valid = sim_people("valid", 2).await?;
    let everyone = sim_people("any", 200).await?;
    sim_terminal_command(
        &stack.folder,
        &[
            "present",
            "--holder",
            &holder_index(&everyone, &valid[0]).to_string(),
            "--consent",
            "drug",
        ],
    )
    .await?;
    await_events(&stack.db, CLINIC, "consent", 1).await;
    put(
        &stack.share.join("req"),
        "YZKsiquc01req_02261201093000009.xml",
        &receipt::drug(CLINIC, &valid[0], "RC-CRASH")?,
    )?;
    // The agent aborts once the answer is in its journal.
    let mut crashing = crashing;
    let status = tokio::time::timeout(e2e::patience(), crashing.child.wait()).await??;
    assert!(!status.success(), "the fault hook aborts the agent");
    assert_eq!(stack.terminal_wrote()?.len(), 1, "asked once");

    let _agent = stack.site.start().await?;
    let got = await_result(
        &stack.share.join("res"),
        "YZKsiquc01res_02261201093000009.xml",
    )
    .await;
    passed_through(&got, &stack.terminal_wrote()?, "YZKsiquc01")?;
    let views = await_events(&stack.db, CLINIC, "info_view", 1).await;
    assert_eq!(views[0]["source"], "file_exchange");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        stored_events(&stack.db, CLINIC, "info_view").await?.len(),
        1
    );
    assert_eq!(stack.terminal_wrote()?.len(), 1, "nothing asked again");
    Ok(())
}

/// kill -9 while the terminal holds the relayed request; it answers while the agent is down: at
/// start that answer is handed to the file exchange, recorded once and passed back, and the
/// request is not sent to the terminal again.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_that_lands_while_the_relay_is_down_is_passed_back_at_start() -> anyhow::Result<()>
{
    let (stack, agent) = Stack::start().await?;
    sim_terminal_command(&stack.folder, &["knobs", "--silent", "true"]).await?;
    let valid = sim_people("valid", 1).await?;
    put(
        &stack.share.join("req"),
        "OQSsiquc01req_202612010077.xml",
        &receipt::eligibility(CLINIC, &valid[0], "RC-0077")?,
    )?;
    // The agent passed it on: it waits in the terminal's `req`.
    eventually("the relayed request in the terminal's folder", || async {
        (!files_in(&stack.folder.join("req")).is_empty()).then_some(())
    })
    .await;
    agent.kill().await?;
    sim_terminal_command(&stack.folder, &["knobs", "--silent", "false"]).await?;
    eventually("the terminal's answer in its res", || async {
        (!files_in(&stack.folder.join("res")).is_empty()).then_some(())
    })
    .await;

    let _agent = stack.site.start().await?;
    let got = await_result(&stack.share.join("res"), "OQSsiquc01res_202612010077.xml").await;
    passed_through(&got, &stack.terminal_wrote()?, "OQSsiquc01")?;
    let relayed = eventually("the relayed lookup at central", || async {
        let found = stack.lookups_from("file_exchange").await;
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert_eq!(relayed[0]["outcome"], "valid", "{}", relayed[0]);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(stack.lookups_from("file_exchange").await.len(), 1);
    assert_eq!(stack.terminal_wrote()?.len(), 1, "asked once");
    assert!(files_in(&stack.folder.join("res")).is_empty());
    Ok(())
}
