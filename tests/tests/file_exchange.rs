//! The receipt-computer file exchange, end to end: request files in the agent's request folder,
//! result files out, events in central — with real processes, a real outbox and PostgreSQL.

use std::path::{Path, PathBuf};

use e2e::{
    AgentSite, Pki, Running, SimPerson, TestDb, eventually, https_endpoint, signal, sim_people,
    site_code, start_central, start_sim_with, stored_lookups,
};
use onshi_domain::codes::SegmentOfResult;
use onshi_domain::ids::{InsuranceCardQuery, MedicalInstitutionCode};
use onshi_domain::xml::{
    QualificationConfirmSearchInfo, QualificationConfirmationRequest,
    QualificationConfirmationResult, RequestHeader, XmlEncoding,
};

fn clinic() -> String {
    site_code("341071236")
}

/// Central, onshi-sim and one agent with a file exchange under its own folder.
struct Stack {
    db: TestDb,
    _pki: Pki,
    _central: Running,
    sim: Running,
    site: AgentSite,
    share: PathBuf,
}

impl Stack {
    async fn start(extra: &str) -> anyhow::Result<(Self, Running)> {
        Self::start_with(extra, &[]).await
    }

    /// With onshi-sim's fault knobs (`sim_args`) and a 1 s national timeout when any is set.
    async fn start_with(extra: &str, sim_args: &[&str]) -> anyhow::Result<(Self, Running)> {
        let site = clinic();
        let pki = Pki::new(&[&site])?;
        let db = TestDb::create().await?;
        let central = start_central(&pki, &db).await?;
        let sim = start_sim_with(&pki, sim_args).await?;
        let agent_site = AgentSite::new(
            &pki,
            &site,
            &https_endpoint(&central, "grpc"),
            &https_endpoint(&sim, "https"),
        )?;
        if !sim_args.is_empty() {
            agent_site.edit_config("timeout_ms = 5000", "timeout_ms = 1000")?;
        }
        let share = agent_site.dir().join("share");
        agent_site.append_config(&format!(
            "[file_exchange]\nfolder = \"{}\"\nsettle_ms = 150\nincomplete_grace_ms = 2500\nrescan_ms = 1000\n{extra}",
            share.display()
        ))?;
        let agent = agent_site.start().await?;
        Ok((
            Self {
                db,
                _pki: pki,
                _central: central,
                sim,
                site: agent_site,
                share,
            },
            agent,
        ))
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.share.join(name)
    }

    /// Writes a request the way good receipt computers do: elsewhere, then renamed in.
    fn put_request(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let staging = self.share.join(format!(".{name}.staging"));
        std::fs::write(&staging, bytes)?;
        std::fs::rename(&staging, self.dir("req").join(name))?;
        Ok(())
    }

    async fn result(&self, name: &str) -> Vec<u8> {
        let path = self.dir("res").join(name);
        eventually(&format!("the result file {name}"), || async {
            std::fs::read(&path).ok()
        })
        .await
    }

    /// Waits until central holds `n` lookup events and returns them.
    async fn lookups_in_central(&self, n: usize) -> Vec<serde_json::Value> {
        eventually(&format!("{n} lookup events in central"), || async {
            let stored = stored_lookups(&self.db).await.ok()?;
            (stored.len() == n).then_some(stored)
        })
        .await
    }
}

fn request(
    site: &str,
    person: &SimPerson,
    file_id: &str,
) -> anyhow::Result<QualificationConfirmationRequest> {
    let today = time::OffsetDateTime::now_utc().date();
    let query = InsuranceCardQuery::parse(
        &person.insurer_number,
        &person.symbol,
        &person.number,
        &person.branch,
        &person.birthdate,
        today,
    )
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(QualificationConfirmationRequest {
        header: RequestHeader {
            qualification_confirmation_date: today,
            medical_institution_code: MedicalInstitutionCode::parse(site)?,
            arbitrary_file_identifier: Some(file_id.to_string()),
        },
        search: QualificationConfirmSearchInfo::from_query(&query, false),
    })
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_file_is_answered_archived_and_recorded_once() -> anyhow::Result<()> {
    let (stack, _agent) = Stack::start("").await?;
    let person = sim_people("valid", 1).await?.remove(0);
    let xml = request(&stack.site.site, &person, "R-0001")?.to_xml(XmlEncoding::Utf8);
    stack.put_request("OQSsiquc01req_202604010001.xml", &xml)?;

    let bytes = stack.result("OQSsiquc01res_202604010001.xml").await;
    let result = QualificationConfirmationResult::from_xml(&bytes)?;
    assert_eq!(result.header.segment_of_result, SegmentOfResult::Normal);
    assert_eq!(
        result.header.arbitrary_file_identifier.as_deref(),
        Some("R-0001")
    );
    assert!(
        result
            .body
            .qualification_validity
            .is_some_and(|v| v.is_valid())
    );
    assert!(String::from_utf8_lossy(&bytes).contains("encoding=\"UTF-8\""));

    // The request is archived, then its journal removed: wait for both.
    eventually(
        "the request to be archived and its journal removed",
        || async {
            (files_in(&stack.dir("archive")) == ["OQSsiquc01req_202604010001.xml"]
                && files_in(&stack.dir("work")).is_empty())
            .then_some(())
        },
    )
    .await;
    assert!(files_in(&stack.dir("req")).is_empty());
    assert!(files_in(&stack.dir("error")).is_empty());

    let stored = stack.lookups_in_central(1).await;
    assert_eq!(stored[0]["source"], "file_exchange", "{}", stored[0]);
    assert_eq!(stored[0]["outcome"], "valid");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shift_jis_request_is_answered_in_shift_jis() -> anyhow::Result<()> {
    let (stack, _agent) = Stack::start("").await?;
    let person = sim_people("valid", 1).await?.remove(0);
    let xml = request(&stack.site.site, &person, "受付0002")?.to_xml(XmlEncoding::ShiftJis);
    stack.put_request("OQSsiquc01req_202604010002.xml", &xml)?;

    let bytes = stack.result("OQSsiquc01res_202604010002.xml").await;
    assert!(
        String::from_utf8_lossy(&bytes[..60]).contains("Shift_JIS"),
        "the result declares Shift_JIS"
    );
    assert!(std::str::from_utf8(&bytes).is_err() || person.name.is_ascii());
    let result = QualificationConfirmationResult::from_xml(&bytes)?;
    assert_eq!(
        result.header.arbitrary_file_identifier.as_deref(),
        Some("受付0002")
    );
    assert_eq!(
        result.body.results[0].name.as_deref(),
        Some(person.name.as_str())
    );
    stack.lookups_in_central(1).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_files_go_to_the_error_folder_with_an_explanation_and_watching_goes_on()
-> anyhow::Result<()> {
    let (stack, _agent) = Stack::start("").await?;
    let person = sim_people("valid", 1).await?.remove(0);

    // Malformed XML, another institution's request, and an oversized file.
    stack.put_request(
        "OQSsiquc01req_202604010003.xml",
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><XmlMsg><MessageHeader><ArbitraryFileIdentifier>R-3</ArbitraryFileIdentifier>",
    )?;
    let other = site_code("134012345");
    let xml = request(&other, &person, "R-4")?.to_xml(XmlEncoding::Utf8);
    stack.put_request("OQSsiquc01req_202604010004.xml", &xml)?;
    stack.put_request(
        "OQSsiquc01req_202604010005.xml",
        &vec![b' '; 2 * 1024 * 1024],
    )?;

    for (suffix, code, echo) in [
        ("202604010003", "AGT-E0001", Some("R-3")),
        ("202604010004", "AGT-E0003", Some("R-4")),
        ("202604010005", "AGT-E0002", None),
    ] {
        let bytes = stack.result(&format!("OQSsiquc01res_{suffix}.xml")).await;
        let result = QualificationConfirmationResult::from_xml(&bytes)?;
        assert_eq!(
            result.header.segment_of_result,
            SegmentOfResult::AbnormalEnd
        );
        assert_eq!(result.header.error_code.as_deref(), Some(code));
        assert_eq!(result.header.arbitrary_file_identifier.as_deref(), echo);
        assert!(!result.header.error_message.unwrap_or_default().is_empty());
        let err = std::fs::read_to_string(
            stack
                .dir("res")
                .join(format!("OQSsiquc01req_{suffix}.xml.err")),
        )?;
        assert!(err.starts_with(code), "{err}");
    }
    eventually("the bad files in the error folder", || async {
        (files_in(&stack.dir("error")).len() == 3).then_some(())
    })
    .await;

    // A whole request with a mistyped insurer number: answered at once (no grace wait, meant
    // for half-written files), naming the field and the rule, Japanese first.
    let xml = request(&stack.site.site, &person, "R-8")?.to_xml(XmlEncoding::Utf8);
    let typo = String::from_utf8(xml)?;
    let insurer = onshi_domain::ids::InsurerNumber::parse(&person.insurer_number)?.to_file_field();
    let wrong_digit = (insurer.as_bytes()[7] - b'0' + 1) % 10;
    let typo = typo.replacen(
        &format!("<InsurerNumber>{insurer}</InsurerNumber>"),
        &format!(
            "<InsurerNumber>{}{wrong_digit}</InsurerNumber>",
            &insurer[..7]
        ),
        1,
    );
    assert!(
        typo.contains(&format!("{}{wrong_digit}<", &insurer[..7])),
        "{typo}"
    );
    let put = std::time::Instant::now();
    stack.put_request("OQSsiquc01req_202604010008.xml", typo.as_bytes())?;
    let bytes = stack.result("OQSsiquc01res_202604010008.xml").await;
    assert!(
        put.elapsed() < std::time::Duration::from_millis(2500),
        "answered after {:?}, not before the grace of 2.5 s",
        put.elapsed()
    );
    let result = QualificationConfirmationResult::from_xml(&bytes)?;
    assert_eq!(result.header.error_code.as_deref(), Some("AGT-E0005"));
    assert_eq!(
        result.header.arbitrary_file_identifier.as_deref(),
        Some("R-8")
    );
    let message = result.header.error_message.unwrap_or_default();
    let ja = message.find("保険者番号の検証番号が一致しません");
    let en = message.find("insurer number");
    assert!(matches!((ja, en), (Some(j), Some(e)) if j < e), "{message}");
    assert!(message.contains("check digit should be"), "{message}");
    assert!(!message.contains("読み取れません"), "{message}");
    eventually("the mistyped request in the error folder", || async {
        (files_in(&stack.dir("error")).len() == 4).then_some(())
    })
    .await;

    // The watcher is still there: a good request after the bad ones is answered.
    let xml = request(&stack.site.site, &person, "R-6")?.to_xml(XmlEncoding::Utf8);
    stack.put_request("OQSsiquc01req_202604010006.xml", &xml)?;
    let result = QualificationConfirmationResult::from_xml(
        &stack.result("OQSsiquc01res_202604010006.xml").await,
    )?;
    assert_eq!(result.header.segment_of_result, SegmentOfResult::Normal);
    // Only the request that reached the national system is a lookup event.
    let stored = stack.lookups_in_central(1).await;
    assert_eq!(stored[0]["source"], "file_exchange");
    Ok(())
}

/// Issue 15, item 10: a request name that is a symbolic link to `/dev/zero` (which would
/// exhaust memory if read) or a FIFO (which would block a thread forever if opened) is refused
/// with an error result, never followed or waited on, and the agent goes on answering.
#[tokio::test(flavor = "multi_thread")]
async fn a_planted_symlink_or_fifo_is_refused_and_never_read() -> anyhow::Result<()> {
    let (stack, _agent) = Stack::start("").await?;
    let person = sim_people("valid", 1).await?.remove(0);
    std::os::unix::fs::symlink(
        "/dev/zero",
        stack.dir("req").join("OQSsiquc01req_202604010011.xml"),
    )?;
    let fifo = stack.dir("req").join("OQSsiquc01req_202604010012.xml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
    assert!(made.success(), "mkfifo failed");

    for suffix in ["202604010011", "202604010012"] {
        let bytes = stack.result(&format!("OQSsiquc01res_{suffix}.xml")).await;
        let result = QualificationConfirmationResult::from_xml(&bytes)?;
        assert_eq!(
            result.header.segment_of_result,
            SegmentOfResult::AbnormalEnd
        );
        assert_eq!(
            result.header.error_code.as_deref(),
            Some("AGT-E0004"),
            "{suffix}"
        );
    }
    // Both are moved aside as they are (the link itself, not its target).
    eventually("the planted files in the error folder", || async {
        (files_in(&stack.dir("error")).len() == 2).then_some(())
    })
    .await;
    let kept =
        std::fs::symlink_metadata(stack.dir("error").join("OQSsiquc01req_202604010011.xml"))?;
    assert!(kept.file_type().is_symlink());

    let xml = request(&stack.site.site, &person, "R-13")?.to_xml(XmlEncoding::Utf8);
    stack.put_request("OQSsiquc01req_202604010013.xml", &xml)?;
    let result = QualificationConfirmationResult::from_xml(
        &stack.result("OQSsiquc01res_202604010013.xml").await,
    )?;
    assert_eq!(result.header.segment_of_result, SegmentOfResult::Normal);
    Ok(())
}

/// Issue 15, item 10, the write side, against the real agent: the agent used to write a result
/// through `.<result name>.<pid>.tmp`, created by following links, so a link planted under that
/// name made it overwrite whatever the link pointed at — its TLS key or outbox key. Temporary
/// names are now random and created new without following links: the planted links are left
/// alone, the keys keep their bytes, and the result arrives as a file of its own.
#[tokio::test(flavor = "multi_thread")]
async fn links_planted_under_temporary_names_never_overwrite_the_agent_s_keys() -> anyhow::Result<()>
{
    let (stack, agent) = Stack::start("").await?;
    let person = sim_people("valid", 1).await?.remove(0);
    let (_, tls_key) = stack._pki.paths.agent(&stack.site.site);
    let mut keys = vec![tls_key];
    for entry in std::fs::read_dir(stack.site.dir().join("data"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "key") {
            keys.push(path);
        }
    }
    assert!(
        keys.len() >= 2,
        "the agent's outbox key was not found: {keys:?}"
    );
    let before: Vec<Vec<u8>> = keys.iter().map(std::fs::read).collect::<Result<_, _>>()?;

    let name = "OQSsiquc01res_202604010014.xml";
    let pid = agent.child.id().expect("the agent runs");
    let mut planted = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        // The old name, and a few near it (a second write, a restarted agent).
        let link = stack
            .dir("res")
            .join(format!(".{name}.{}.tmp", pid + i as u32));
        std::os::unix::fs::symlink(key, &link)?;
        planted.push(link);
    }
    let xml = request(&stack.site.site, &person, "R-14")?.to_xml(XmlEncoding::Utf8);
    stack.put_request("OQSsiquc01req_202604010014.xml", &xml)?;
    let result = QualificationConfirmationResult::from_xml(&stack.result(name).await)?;
    assert_eq!(result.header.segment_of_result, SegmentOfResult::Normal);
    stack.lookups_in_central(1).await;

    let kind = std::fs::symlink_metadata(stack.dir("res").join(name))?.file_type();
    assert!(kind.is_file(), "the result is not a plain file: {kind:?}");
    for (key, bytes) in keys.iter().zip(&before) {
        assert_eq!(
            &std::fs::read(key)?,
            bytes,
            "{} was overwritten",
            key.display()
        );
    }
    for link in &planted {
        assert!(std::fs::symlink_metadata(link)?.file_type().is_symlink());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_written_slowly_in_pieces_is_not_read_early() -> anyhow::Result<()> {
    let (stack, _agent) = Stack::start("").await?;
    let person = sim_people("valid", 1).await?.remove(0);
    let xml = request(&stack.site.site, &person, "R-7")?.to_xml(XmlEncoding::Utf8);
    let path = stack.dir("req").join("OQSsiquc01req_202604010007.xml");

    // Written straight into the request folder, in four pieces with pauses longer than the
    // agent's settle time (150 ms), as a careless receipt computer would.
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&path)?;
        for piece in xml.chunks(xml.len().div_ceil(4)) {
            file.write_all(piece)?;
            file.flush()?;
            // The pause is the point of this test: a writer that is slow on purpose.
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        }
    }
    let result = QualificationConfirmationResult::from_xml(
        &stack.result("OQSsiquc01res_202604010007.xml").await,
    )?;
    assert_eq!(result.header.segment_of_result, SegmentOfResult::Normal);
    assert!(files_in(&stack.dir("error")).is_empty());
    assert_eq!(
        files_in(&stack.dir("res")),
        ["OQSsiquc01res_202604010007.xml"],
        "one result and no error file"
    );
    stack.lookups_in_central(1).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_recording_and_answering_is_answered_exactly_once_after_restart()
-> anyhow::Result<()> {
    let (stack, agent) = Stack::start("").await?;
    agent.kill().await?;
    // The same agent, now told to abort right after the lookup event is recorded.
    let mut crashing = stack
        .site
        .start_with_env(&[("EDGE_AGENT_FAULT", "abort-after-record")])
        .await?;
    let person = sim_people("valid", 1).await?.remove(0);
    let xml = request(&stack.site.site, &person, "R-8")?.to_xml(XmlEncoding::Utf8);
    stack.put_request("OQSsiquc01req_202604010008.xml", &xml)?;

    let status = tokio::time::timeout(e2e::patience(), crashing.child.wait()).await??;
    assert!(!status.success(), "the agent aborted: {status}");
    assert!(files_in(&stack.dir("res")).is_empty(), "no result yet");
    assert_eq!(
        files_in(&stack.dir("work")),
        [
            "OQSsiquc01req_202604010008.xml",
            "OQSsiquc01req_202604010008.xml.journal"
        ],
        "the request and its journal wait in the work folder"
    );

    let _restarted = stack.site.start().await?;
    let result = QualificationConfirmationResult::from_xml(
        &stack.result("OQSsiquc01res_202604010008.xml").await,
    )?;
    assert_eq!(result.header.segment_of_result, SegmentOfResult::Normal);
    assert_eq!(
        result.header.arbitrary_file_identifier.as_deref(),
        Some("R-8")
    );
    assert_eq!(
        files_in(&stack.dir("res")),
        ["OQSsiquc01res_202604010008.xml"]
    );
    // The result is written first, then the request archived and its journal removed.
    eventually("the work folder to empty", || async {
        files_in(&stack.dir("work")).is_empty().then_some(())
    })
    .await;

    // Exactly one lookup in central: the restart wrote the result from the journal without
    // asking or recording again. Wait for the agent's outbox to drain before counting.
    eventually("the agent's outbox to drain", || async {
        let s = stack.site.status().await.ok()?;
        (s["outbox_depth"] == 0 && s["last_acked_sequence"] == s["last_produced_sequence"])
            .then_some(())
    })
    .await;
    let stored = stored_lookups(&stack.db).await?;
    assert_eq!(stored.len(), 1, "exactly one lookup event: {stored:?}");
    assert_eq!(stored[0]["source"], "file_exchange");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn when_the_national_system_is_unreachable_the_result_says_to_check_the_card()
-> anyhow::Result<()> {
    let (stack, _agent) = Stack::start_with("", &["--outage"]).await?;
    let person = sim_people("valid", 1).await?.remove(0);
    let xml = request(&stack.site.site, &person, "受付0009")?.to_xml(XmlEncoding::ShiftJis);
    stack.put_request("OQSsiquc01req_202604010009.xml", &xml)?;

    let bytes = stack.result("OQSsiquc01res_202604010009.xml").await;
    let result = QualificationConfirmationResult::from_xml(&bytes)?;
    assert_eq!(
        result.header.segment_of_result,
        SegmentOfResult::AbnormalEnd
    );
    assert_eq!(result.header.error_code.as_deref(), Some("AGT-E0101"));
    assert_eq!(
        result.header.arbitrary_file_identifier.as_deref(),
        Some("受付0009")
    );
    assert!(
        result
            .header
            .error_message
            .is_some_and(|m| m.contains("保険証")),
        "the receipt computer is told to fall back to the physical card"
    );
    assert!(String::from_utf8_lossy(&bytes[..60]).contains("Shift_JIS"));
    // Not the file's fault: archived, not in the error folder; and the attempt is audited.
    eventually("the request to be archived", || async {
        (files_in(&stack.dir("archive")).len() == 1).then_some(())
    })
    .await;
    assert!(files_in(&stack.dir("error")).is_empty());
    let stored = stack.lookups_in_central(1).await;
    assert_eq!(stored[0]["outcome"], "unreachable", "{}", stored[0]);
    assert_eq!(stored[0]["source"], "file_exchange");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_answer_of_the_national_system_is_passed_on_as_it_came() -> anyhow::Result<()> {
    let (stack, _agent) = Stack::start_with("", &["--error-code", "SIM-E0301"]).await?;
    let person = sim_people("valid", 1).await?.remove(0);
    let xml = request(&stack.site.site, &person, "R-10")?.to_xml(XmlEncoding::Utf8);
    stack.put_request("OQSsiquc01req_202604010010.xml", &xml)?;

    let result = QualificationConfirmationResult::from_xml(
        &stack.result("OQSsiquc01res_202604010010.xml").await,
    )?;
    assert_eq!(
        result.header.segment_of_result,
        SegmentOfResult::AbnormalEnd
    );
    assert_eq!(result.header.error_code.as_deref(), Some("SIM-E0301"));
    let stored = stack.lookups_in_central(1).await;
    assert_eq!(stored[0]["outcome"], "error", "{}", stored[0]);
    assert_eq!(stored[0]["error_code"], "SIM-E0301", "{}", stored[0]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_the_answer_is_journaled_records_it_after_restart_without_asking_again()
-> anyhow::Result<()> {
    let (stack, agent) = Stack::start("").await?;
    agent.kill().await?;
    let mut crashing = stack
        .site
        .start_with_env(&[("EDGE_AGENT_FAULT", "abort-after-answer")])
        .await?;
    let person = sim_people("valid", 1).await?.remove(0);
    let xml = request(&stack.site.site, &person, "R-11")?.to_xml(XmlEncoding::Utf8);
    stack.put_request("OQSsiquc01req_202604010011.xml", &xml)?;
    let status = tokio::time::timeout(e2e::patience(), crashing.child.wait()).await??;
    assert!(!status.success(), "the agent aborted: {status}");

    // The national system is now unreachable: only the journaled answer can produce a valid
    // result, so a valid result proves there was no second query.
    signal(&stack.sim, "USR1").await?;
    let _restarted = stack.site.start().await?;
    let result = QualificationConfirmationResult::from_xml(
        &stack.result("OQSsiquc01res_202604010011.xml").await,
    )?;
    assert_eq!(result.header.segment_of_result, SegmentOfResult::Normal);
    assert!(
        result
            .body
            .qualification_validity
            .is_some_and(|v| v.is_valid())
    );
    eventually("the agent's outbox to drain", || async {
        let s = stack.site.status().await.ok()?;
        (s["outbox_depth"] == 0 && s["last_acked_sequence"] == s["last_produced_sequence"])
            .then_some(())
    })
    .await;
    let stored = stored_lookups(&stack.db).await?;
    assert_eq!(stored.len(), 1, "exactly one lookup event: {stored:?}");
    assert_eq!(stored[0]["outcome"], "valid", "{}", stored[0]);
    assert_eq!(stored[0]["source"], "file_exchange");
    Ok(())
}
