//! The agent in terminal mode, end to end: the real `edge-agent` process reaching the national
//! system through `onshi-sim terminal`'s folders (the qualification terminal's file interface),
//! events at central in PostgreSQL.

use std::path::{Path, PathBuf};

use e2e::http::Operator;
use e2e::{
    AgentSite, Pki, Running, TestDb, ViewPatient, await_events, bin, eventually, https_endpoint,
    sim_people, sim_terminal_command, start_central_with, start_sim_terminal, stored_events,
    stored_lookups,
};

/// A real Tokyo clinic's code (the corpus's): its check digit covers only the six digits before
/// it, the rule of prefectures 11-14.
const CLINIC: &str = "1310110049";

struct Stack {
    db: TestDb,
    pki: Pki,
    central: Running,
    terminal: Running,
    site: AgentSite,
    folder: PathBuf,
}

impl Stack {
    async fn start(timeout_ms: u64, sim_flags: &[&str]) -> anyhow::Result<(Self, Running)> {
        Self::start_with(timeout_ms, sim_flags, "").await
    }

    /// With `extra` appended to the agent's configuration (e.g. a staff roster).
    async fn start_with(
        timeout_ms: u64,
        sim_flags: &[&str],
        extra: &str,
    ) -> anyhow::Result<(Self, Running)> {
        Self::start_full(timeout_ms, sim_flags, extra, &[]).await
    }

    /// With `central_env` for central too (e.g. how often it checks availability), and
    /// central's dashboard listening (field `web`).
    async fn start_full(
        timeout_ms: u64,
        sim_flags: &[&str],
        extra: &str,
        central_env: &[(&str, &str)],
    ) -> anyhow::Result<(Self, Running)> {
        let pki = Pki::new(&[CLINIC])?;
        let db = TestDb::create().await?;
        let central =
            start_central_with(&pki, &db, &["--web-listen", "127.0.0.1:0"], central_env).await?;
        // The direct endpoint is never used in terminal mode.
        let site = AgentSite::new(
            &pki,
            CLINIC,
            &https_endpoint(&central, "grpc"),
            "https://127.0.0.1:9",
        )?;
        let folder = site.dir().join("OQS");
        let flags: Vec<&str> = ["--institution", CLINIC]
            .into_iter()
            .chain(sim_flags.iter().copied())
            .collect();
        let terminal = start_sim_terminal(&folder, &flags).await?;
        site.use_terminal(&folder, timeout_ms)?;
        if !extra.is_empty() {
            site.append_config(extra)?;
        }
        let agent = site.start().await?;
        Ok((
            Self {
                db,
                pki,
                central,
                terminal,
                site,
                folder,
            },
            agent,
        ))
    }

    async fn knobs(&self, flags: &[&str]) -> anyhow::Result<()> {
        let mut args = vec!["knobs"];
        args.extend_from_slice(flags);
        sim_terminal_command(&self.folder, &args).await?;
        Ok(())
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .filter(|n| n != "done")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn counter_lookups_and_face_results_go_through_the_terminal_folders() -> anyhow::Result<()> {
    let (stack, _agent) = Stack::start(10_000, &[]).await?;
    let person = sim_people("valid", 1).await?.remove(0);

    let output = stack.site.lookup(&person).await?;
    assert!(
        output.status.success(),
        "lookup failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(reply["outcome"], "valid", "reply: {reply}");
    // The terminal took the request and the agent took the result: nothing is left behind.
    assert!(names(&stack.folder.join("req")).is_empty());
    assert!(names(&stack.folder.join("res")).is_empty());

    // A patient on the face reader: recorded once, as a card lookup from the face reader with
    // its consent.
    let face = sim_terminal_command(
        &stack.folder,
        &["present", "--holder", "0", "--consent", "drug,checkup"],
    )
    .await?;
    let lookups = await_events(&stack.db, CLINIC, "lookup", 2).await;
    let by_card = lookups
        .iter()
        .find(|l| l["route"] == "my_number_card")
        .expect("the face result's lookup");
    assert_eq!(by_card["identity_verification"], "face");
    assert_eq!(by_card["source"], "face_reader", "{by_card}");
    assert!(
        lookups
            .iter()
            .any(|l| l["route"] != "my_number_card" && l["source"] == "counter"),
        "{lookups:?}"
    );
    let consents = await_events(&stack.db, CLINIC, "consent", 1).await;
    assert_eq!(consents[0]["drug"], "given", "{}", consents[0]);
    // The face file is the terminal's: still there, as written.
    let written: serde_json::Value = serde_json::from_str(face.trim())?;
    let face_path = written["face"]
        .as_str()
        .expect("present prints the face file");
    assert!(Path::new(face_path).exists());

    // The terminal's health is the national link: it answers (on a loaded machine an answer
    // can take past the 5 s "slow" mark, which is still an answer; silence is the failure).
    let status = stack.site.status().await?;
    let national = status["national_link"].as_str().unwrap_or_default();
    assert!(
        national.contains("answered") || national.starts_with("slow"),
        "{status}"
    );
    let links = await_events(&stack.db, CLINIC, "link_change", 1).await;
    assert!(
        links
            .iter()
            .any(|l| l["target"] == "terminal" && l["state"] == "up"),
        "{links:?}"
    );
    drop(stack.terminal);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_terminal_tells_the_clerk_and_central_and_recovers() -> anyhow::Result<()> {
    const TIMEOUT_MS: u64 = 1_500;
    // Past the timeout: the agent's own giving up (journal, withdrawal) for the lookup's
    // latency; plus starting the CLI and its control-API call for the clerk's wait.
    const GIVE_UP_MARGIN_MS: u64 = 1_500;
    const ANSWER_MARGIN_MS: u64 = 5_000;
    let (stack, _agent) = Stack::start_full(
        TIMEOUT_MS,
        &["--silent"],
        "",
        &[
            ("CENTRAL_ALERT_CHECK_SECS", "1"),
            ("CENTRAL_UNAVAILABLE_ALERT_SECS", "0"),
        ],
    )
    .await?;
    let operator = Operator::new(&stack.pki, &stack.central);
    let (status, answer) = operator
        .send(
            "PUT",
            "/api/v1/opening-hours",
            &serde_json::from_str(ALWAYS_OPEN)?,
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    let person = sim_people("valid", 1).await?.remove(0);

    let asked_at = std::time::Instant::now();
    let output = stack.site.lookup(&person).await?;
    let answered_in = asked_at.elapsed();
    // The clerk hears it within the configured timeout, not later: at least the 1.5 s the agent
    // waits, and at most a margin more (on a loaded 2-core machine).
    assert!(
        answered_in >= std::time::Duration::from_millis(TIMEOUT_MS),
        "answered after {answered_in:?}, before the {TIMEOUT_MS} ms timeout"
    );
    assert!(
        answered_in < std::time::Duration::from_millis(TIMEOUT_MS + ANSWER_MARGIN_MS),
        "answered after {answered_in:?}: more than {ANSWER_MARGIN_MS} ms past the {TIMEOUT_MS} ms timeout"
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("資格確認端末が応答しません"), "{text}");
    assert!(text.contains("terminal software is running"), "{text}");
    // The unanswered request was withdrawn: the terminal cannot answer it unrecorded later.
    assert!(
        names(&stack.folder.join("req")).is_empty(),
        "{:?}",
        names(&stack.folder.join("req"))
    );
    let lookups = await_events(&stack.db, CLINIC, "lookup", 1).await;
    assert_eq!(lookups[0]["outcome"], "unreachable");
    let waited = lookups[0]["latency_ms"].as_u64().unwrap_or_default();
    assert!(
        (TIMEOUT_MS..TIMEOUT_MS + GIVE_UP_MARGIN_MS).contains(&waited),
        "the lookup waited {waited} ms for a {TIMEOUT_MS} ms timeout: {}",
        lookups[0]
    );
    eventually("the terminal link down at central", || async {
        let links = stored_events(&stack.db, CLINIC, "link_change").await.ok()?;
        links
            .iter()
            .any(|l| l["target"] == "terminal" && l["state"] == "down")
            .then_some(())
    })
    .await;
    // Central's availability: its own state, not "national unreachable", and an alert.
    let silent = await_availability(&operator, "terminal_not_answering").await;
    assert_eq!(silent["alerting"], true, "{silent}");
    assert_eq!(
        silent["label"], "資格確認端末が応答しません / terminal not answering",
        "{silent}"
    );
    let alert = eventually("a site_unavailable alert", || async {
        let (200, alerts) = operator.get("/api/v1/alerts").await.ok()? else {
            return None;
        };
        alerts
            .as_array()?
            .iter()
            .find(|a| a["kind"] == "site_unavailable" && a["site_code"] == CLINIC)
            .cloned()
    })
    .await;
    assert!(
        alert["detail"]
            .as_str()
            .unwrap_or("")
            .contains("terminal not answering"),
        "{alert}"
    );
    // And the site's page on the dashboard (HTML) says so too, as its own state.
    let page = site_page(&stack, &operator).await?;
    let status_at = page
        .find("id=\"site-status\"")
        .expect("the site page's status");
    let status = &page[status_at..page.len().min(status_at + 600)];
    assert!(
        status.contains("data-status=\"terminal_not_answering\""),
        "{status}"
    );
    assert!(status.contains("資格確認端末が応答しません"), "{status}");

    stack.knobs(&["--silent", "false"]).await?;
    // The terminal reads its knobs when they change: the clerk tries again until it answers.
    eventually("a lookup answered again", || async {
        let output = stack.site.lookup(&person).await.ok()?;
        let reply: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        (reply["outcome"] == "valid").then_some(())
    })
    .await;
    eventually("the terminal link up again at central", || async {
        let links = stored_events(&stack.db, CLINIC, "link_change").await.ok()?;
        (links.last()?["state"] == "up").then_some(())
    })
    .await;
    let online = await_availability(&operator, "online").await;
    assert_eq!(online["alerting"], false, "{online}");
    Ok(())
}

/// The clinic's page on central's dashboard, read by a viewer account made for it.
async fn site_page(stack: &Stack, operator: &Operator) -> anyhow::Result<String> {
    let viewer = operator
        .signed_in_account(&stack.central, "miru", "viewer")
        .await?;
    let (status, _, page) = viewer.get(&format!("/sites/{CLINIC}")).await?;
    let page = String::from_utf8_lossy(&page).into_owned();
    anyhow::ensure!(status == 200, "the site page: {status} {page}");
    Ok(page)
}

const ALWAYS_OPEN: &str = r#"{"weekly": {"mon": ["00:00-24:00"], "tue": ["00:00-24:00"],
  "wed": ["00:00-24:00"], "thu": ["00:00-24:00"], "fri": ["00:00-24:00"], "sat": ["00:00-24:00"],
  "sun": ["00:00-24:00"]}, "closed_on_national_holidays": false}"#;

/// The clinic's availability at central once it reads `state`.
async fn await_availability(operator: &Operator, state: &str) -> serde_json::Value {
    eventually(&format!("the clinic {state} at central"), || async {
        let (status, body) = operator
            .get(&format!("/api/v1/sites/{CLINIC}/availability"))
            .await
            .ok()?;
        (status == 200 && body["state"] == state).then_some(body)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_result_that_lands_while_the_agent_is_killed_is_recorded_once_at_start()
-> anyhow::Result<()> {
    // `--requests move` keeps every request the terminal took in `req/done`: what it was asked.
    let (stack, agent) = Stack::start(30_000, &["--silent", "--requests", "move"]).await?;
    let person = sim_people("valid", 1).await?.remove(0);
    // The counter asks; the terminal is down, so the request waits in `req`.
    let site = &stack.site;
    let pending = tokio::spawn({
        let config = site.config.clone();
        let person = person.clone();
        async move {
            tokio::process::Command::new(e2e::bin("edge-agent"))
                .arg("--config")
                .arg(config)
                .args(["lookup", "--json"])
                .args(["--insurer", &person.insurer_number])
                .args(["--symbol", &person.symbol])
                .args(["--number", &person.number])
                .args(["--branch", &person.branch])
                .args(["--birthdate", &person.birthdate])
                .output()
                .await
        }
    });
    let req = stack.folder.join("req");
    let written = eventually("the request in the terminal's folder", || async {
        let names = names(&req);
        (!names.is_empty()).then_some(names)
    })
    .await;
    assert_eq!(written.len(), 1);
    // kill -9 of the agent, then the terminal answers while it is down.
    agent.kill().await?;
    let _ = pending.await;
    stack.knobs(&["--silent", "false"]).await?;
    let res = stack.folder.join("res");
    eventually("the terminal's result in res", || async {
        (!names(&res).is_empty()).then_some(())
    })
    .await;
    let done = stack.folder.join("req").join("done");
    assert_eq!(names(&done), written, "the terminal took the one request");
    // At start the result is matched, recorded once, and taken away; nothing is sent again.
    let _agent = stack.site.start().await?;
    let lookups = await_events(&stack.db, CLINIC, "lookup", 1).await;
    assert_eq!(lookups[0]["outcome"], "valid");
    eventually("the result taken from res", || async {
        names(&res).is_empty().then_some(())
    })
    .await;
    let person_two = sim_people("valid", 2).await?.remove(1);
    let output = stack.site.lookup(&person_two).await?;
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(reply["outcome"], "valid");
    await_events(&stack.db, CLINIC, "lookup", 2).await;
    let all = stored_lookups(&stack.db).await?;
    assert_eq!(all.len(), 2, "each result recorded once: {all:?}");
    let asked = names(&done);
    assert_eq!(
        asked.len(),
        2,
        "each request written into the terminal's folder once: {asked:?}"
    );
    assert!(asked.contains(&written[0]), "{asked:?}");
    Ok(())
}

/// kill -9 of the agent at a step of a counter lookup through the terminal (the step before,
/// the request written and unanswered, is the test above): the terminal is asked once, central
/// gets the lookup once, and the next lookup works.
async fn a_lookup_killed_at(fault: &str) -> anyhow::Result<()> {
    // `--requests move` keeps every request the terminal took in `req/done`: what it was asked.
    let (stack, agent) = Stack::start(30_000, &["--requests", "move"]).await?;
    agent.kill().await?;
    let mut crashing = stack
        .site
        .start_with_env(&[("EDGE_AGENT_FAULT", fault)])
        .await?;
    let person = sim_people("valid", 2).await?;
    let asked = stack.site.lookup(&person[0]).await?;
    let status = tokio::time::timeout(e2e::patience(), crashing.child.wait()).await??;
    assert!(!status.success(), "the agent aborted at {fault}: {status}");
    assert!(
        !asked.status.success(),
        "the counter got no answer from an agent that died: {}",
        String::from_utf8_lossy(&asked.stdout)
    );
    let res = stack.folder.join("res");
    assert!(
        names(&res).is_empty(),
        "the result was taken before the crash"
    );

    let _agent = stack.site.start().await?;
    let lookups = await_events(&stack.db, CLINIC, "lookup", 1).await;
    assert_eq!(lookups[0]["outcome"], "valid");
    let output = stack.site.lookup(&person[1]).await?;
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(reply["outcome"], "valid");
    // Events reach central in outbox order: a second copy of the first lookup would have been
    // recorded at start, before the second lookup, so it would be stored by now.
    await_events(&stack.db, CLINIC, "lookup", 2).await;
    let all = stored_lookups(&stack.db).await?;
    assert_eq!(all.len(), 2, "each lookup recorded once: {all:?}");
    assert_eq!(
        names(&stack.folder.join("req").join("done")).len(),
        2,
        "each request written into the terminal's folder once"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_the_result_is_taken_the_lookup_is_recorded_once_at_start()
-> anyhow::Result<()> {
    a_lookup_killed_at("terminal-abort-after-result").await
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_the_lookup_is_recorded_it_is_not_recorded_again() -> anyhow::Result<()> {
    a_lookup_killed_at("terminal-abort-after-record").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_national_batch_and_drug_and_checkup_views_go_through_the_terminal() -> anyhow::Result<()>
{
    let (stack, _agent) =
        Stack::start_with(10_000, &[], "[[staff]]\nid = \"D1\"\nrole = \"doctor\"\n").await?;

    // The batch inquiry's two steps (OQSmuquc01, then OQSmuquc02 until the results are ready).
    let valid = sim_people("valid", 2).await?;
    let output = national_batch(&stack, &valid).await?;
    assert!(
        output.status.success(),
        "batch failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(summary["valid"], 2, "{summary}");

    // The first valid person presents the card on the face reader and agrees to share drug
    // information; a doctor then views it, through a YZKsiquc01 request file.
    consents_on_the_face_reader(&stack, &valid[0]).await?;
    let (code, drug, stderr) = stack
        .site
        .view("drug", "D1", ViewPatient::Card(&valid[0]))
        .await?;
    assert_eq!(code, Some(0), "{drug} {stderr}");
    assert_eq!(drug["allowed"], true, "{drug}");
    // And the checkup results, through a TKKsiquc01 request file.
    let (code, checkup, stderr) = stack
        .site
        .view("checkup", "D1", ViewPatient::Card(&valid[0]))
        .await?;
    assert_eq!(code, Some(0), "{checkup} {stderr}");
    assert_eq!(checkup["allowed"], true, "{checkup}");
    await_events(&stack.db, CLINIC, "info_view", 2).await;
    assert!(names(&stack.folder.join("req")).is_empty());
    assert!(names(&stack.folder.join("res")).is_empty());
    Ok(())
}

/// `edge-agent batch --mode national` for `people`: the batch inquiry's two steps through the
/// terminal.
async fn national_batch(
    stack: &Stack,
    people: &[e2e::SimPerson],
) -> anyhow::Result<std::process::Output> {
    let mut csv = String::from("row_id,insurer_number,symbol,number,branch,birthdate\n");
    for (i, p) in people.iter().enumerate() {
        csv.push_str(&format!(
            "R-{i},{},{},{},{},{}\n",
            p.insurer_number, p.symbol, p.number, p.branch, p.birthdate
        ));
    }
    let input = stack.site.dir().join("batch.csv");
    std::fs::write(&input, &csv)?;
    let out = stack.site.dir().join("batch_result.csv");
    Ok(tokio::time::timeout(
        e2e::patience(),
        tokio::process::Command::new(bin("edge-agent"))
            .arg("--config")
            .arg(&stack.site.config)
            .args(["batch", "--json", "--mode", "national", "--csv"])
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .output(),
    )
    .await??)
}

/// The requests the terminal took, by kind (`--requests move` keeps them in `req/done`).
fn asked_of(stack: &Stack, kind: &str) -> Vec<String> {
    names(&stack.folder.join("req").join("done"))
        .into_iter()
        .filter(|n| n.starts_with(kind))
        .collect()
}

/// The stack with a doctor on the roster and the terminal keeping the requests it took.
async fn keeping_stack() -> anyhow::Result<(Stack, Running)> {
    Stack::start_with(
        30_000,
        &["--requests", "move"],
        "[[staff]]\nid = \"D1\"\nrole = \"doctor\"\n",
    )
    .await
}

/// Restarts the agent with `fault` (kill -9 at that step of a terminal exchange).
async fn restart_crashing(stack: &Stack, agent: Running, fault: &str) -> anyhow::Result<Running> {
    agent.kill().await?;
    stack
        .site
        .start_with_env(&[("EDGE_AGENT_FAULT", fault)])
        .await
}

/// `person` agrees on the face reader to share drug and checkup information (a consent event).
async fn consents_on_the_face_reader(stack: &Stack, person: &e2e::SimPerson) -> anyhow::Result<()> {
    let everyone = sim_people("any", 200).await?;
    let holder = everyone
        .iter()
        .position(|p| p.number == person.number && p.insurer_number == person.insurer_number)
        .expect("the person's index");
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
    await_events(&stack.db, CLINIC, "consent", 1).await;
    Ok(())
}

/// kill -9 of the agent right after it took the terminal's answer to a drug view (the answer
/// journaled and removed from `res`, the view not yet recorded): at start the view is recorded
/// once, allowed, as the policy decided it before the crash; the request was written once.
#[tokio::test(flavor = "multi_thread")]
async fn a_view_killed_after_the_result_is_taken_is_recorded_once_at_start() -> anyhow::Result<()> {
    a_view_killed_at("terminal-abort-after-result").await
}

/// The same, killed after the view's event committed and before its journal entry was closed:
/// not recorded again.
#[tokio::test(flavor = "multi_thread")]
async fn a_view_killed_after_it_is_recorded_is_not_recorded_again() -> anyhow::Result<()> {
    a_view_killed_at("terminal-abort-after-record").await
}

async fn a_view_killed_at(fault: &str) -> anyhow::Result<()> {
    let (stack, agent) = keeping_stack().await?;
    let person = sim_people("valid", 1).await?.remove(0);
    consents_on_the_face_reader(&stack, &person).await?;
    let mut crashing = restart_crashing(&stack, agent, fault).await?;
    let (code, view, stderr) = stack
        .site
        .view("drug", "D1", ViewPatient::Card(&person))
        .await?;
    let status = tokio::time::timeout(e2e::patience(), crashing.child.wait()).await??;
    assert!(!status.success(), "the agent aborted: {status}");
    assert_ne!(
        code,
        Some(0),
        "no answer from an agent that died: {view} {stderr}"
    );
    assert!(names(&stack.folder.join("res")).is_empty());

    let _agent = stack.site.start().await?;
    let views = await_events(&stack.db, CLINIC, "info_view", 1).await;
    assert_eq!(views[0]["staff_id"], "D1", "{}", views[0]);
    assert_eq!(views[0]["category"], "drug", "{}", views[0]);
    assert_eq!(views[0]["allowed"], true, "{}", views[0]);
    // Then a view that is not interrupted; a second copy of the first would be stored before it.
    let (code, checkup, stderr) = stack
        .site
        .view("checkup", "D1", ViewPatient::Card(&person))
        .await?;
    assert_eq!(code, Some(0), "{checkup} {stderr}");
    let views = await_events(&stack.db, CLINIC, "info_view", 2).await;
    assert_eq!(views.len(), 2, "each view recorded once: {views:?}");
    assert_eq!(views[0]["allowed"], views[1]["allowed"], "{views:?}");
    assert_eq!(
        asked_of(&stack, "YZKsiquc01req").len(),
        1,
        "the drug request written once"
    );
    assert_eq!(asked_of(&stack, "TKKsiquc01req").len(), 1);
    Ok(())
}

/// kill -9 of the agent right after it took the terminal's answer to a batch's first step
/// (`OQSmuquc01`, the reception number): at start the batch is resumed (its results asked for
/// with `OQSmuquc02`) and each row recorded once, with the batch's id; the rows were sent once.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_killed_after_its_first_step_is_finished_and_recorded_once_at_start()
-> anyhow::Result<()> {
    a_batch_killed_at("terminal-abort-after-result").await
}

/// The same, killed when the first of the batch's journal entries is closed (a poll answered
/// "in progress", or the rows recorded): each row recorded once all the same.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_killed_when_a_step_is_closed_is_recorded_once() -> anyhow::Result<()> {
    a_batch_killed_at("terminal-abort-after-record").await
}

async fn a_batch_killed_at(fault: &str) -> anyhow::Result<()> {
    let (stack, agent) = keeping_stack().await?;
    let mut crashing = restart_crashing(&stack, agent, fault).await?;
    let people = sim_people("valid", 3).await?;
    let output = national_batch(&stack, &people[..2]).await?;
    let status = tokio::time::timeout(e2e::patience(), crashing.child.wait()).await??;
    assert!(!status.success(), "the agent aborted: {status}");
    assert!(
        !output.status.success(),
        "no summary from an agent that died: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(asked_of(&stack, "OQSmuquc01req").len(), 1);

    let _agent = stack.site.start().await?;
    let rows = await_events(&stack.db, CLINIC, "lookup", 2).await;
    assert!(rows.iter().all(|r| r["source"] == "batch"), "{rows:?}");
    assert!(rows.iter().all(|r| r["outcome"] == "valid"), "{rows:?}");
    assert_eq!(rows[0]["batch_id"], rows[1]["batch_id"], "{rows:?}");
    // A later lookup is stored after any second copy of the rows would have been.
    let output = stack.site.lookup(&people[2]).await?;
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(reply["outcome"], "valid", "{reply}");
    await_events(&stack.db, CLINIC, "lookup", 3).await;
    let all = stored_lookups(&stack.db).await?;
    assert_eq!(all.len(), 3, "each row recorded once: {all:?}");
    assert_eq!(
        asked_of(&stack, "OQSmuquc01req").len(),
        1,
        "the rows sent to the terminal once"
    );
    assert!(!asked_of(&stack, "OQSmuquc02req").is_empty());
    Ok(())
}

/// The terminal zips the batch results (`--zip-batch`): the agent reads the result XML inside
/// the archive, and each row is answered and recorded.
#[tokio::test(flavor = "multi_thread")]
async fn a_national_batch_whose_results_come_zipped_is_read() -> anyhow::Result<()> {
    let copies = tempfile::tempdir()?;
    let copies_flag = copies.path().display().to_string();
    let (stack, _agent) =
        Stack::start(10_000, &["--zip-batch", "--copy-results", &copies_flag]).await?;
    let valid = sim_people("valid", 2).await?;
    let output = national_batch(&stack, &valid).await?;
    assert!(
        output.status.success(),
        "batch failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(summary["valid"], 2, "{summary}");
    // What the terminal answered: the results as a zip archive.
    let zipped: Vec<String> = names(copies.path())
        .into_iter()
        .filter(|n| {
            n.starts_with("OQSmuquc02res")
                && std::fs::read(copies.path().join(n)).is_ok_and(|b| onshi_domain::zip::is_zip(&b))
        })
        .collect();
    assert_eq!(zipped.len(), 1, "{:?}", names(copies.path()));
    let rows = await_events(&stack.db, CLINIC, "lookup", 2).await;
    assert!(
        rows.iter()
            .all(|r| r["source"] == "batch" && r["outcome"] == "valid"),
        "{rows:?}"
    );
    assert!(names(&stack.folder.join("res")).is_empty());
    Ok(())
}

/// A morning rush at the face reader: 1,000 results land in the terminal's `face` folder at
/// once (the terminal writes each whole, under its final name), every other one in Shift_JIS;
/// central gets 1,000 lookups, none twice, and every file stays byte for byte as written.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_a_thousand_face_results_is_recorded_once_each() -> anyhow::Result<()> {
    const N: usize = 1_000;
    let (stack, _agent) = Stack::start(10_000, &[]).await?;
    let printed = sim_terminal_command(&stack.folder, &["present", "--holder", "0"]).await?;
    let printed: serde_json::Value = serde_json::from_str(printed.trim())?;
    let first = PathBuf::from(
        printed["face"]
            .as_str()
            .expect("present prints the face file"),
    );
    let utf8 = std::fs::read(&first)?;
    let shift_jis = in_shift_jis(&utf8)?;
    assert_ne!(shift_jis, utf8, "the face file has Japanese text to encode");
    let face = first.parent().expect("the face folder").to_path_buf();
    let stem = first
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("a file name")
        .to_string();
    let mut written = std::collections::BTreeMap::new();
    written.insert(
        first
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned(),
        utf8.clone(),
    );
    for i in 1..N {
        let bytes = if i % 2 == 1 { &shift_jis } else { &utf8 };
        let name = format!("{stem}_{i:04}.xml");
        let temporary = face.join(format!(".burst-{i}.tmp"));
        std::fs::write(&temporary, bytes)?;
        std::fs::rename(&temporary, face.join(&name))?;
        written.insert(name, bytes.clone());
    }
    // A loaded 2-core machine records and ships them in tens of seconds.
    let lookups = e2e::eventually_within(
        "1,000 face-reader lookups at central",
        std::time::Duration::from_secs(240),
        || async {
            stored_events(&stack.db, CLINIC, "lookup")
                .await
                .ok()
                .filter(|events| events.len() >= N)
        },
    )
    .await;
    assert!(lookups.iter().all(|l| l["source"] == "face_reader"));
    // Shift_JIS and UTF-8 files read alike: the same person, the same outcome.
    assert!(
        lookups.iter().all(|l| l["outcome"] == lookups[0]["outcome"]
            && l["patient_ref"] == lookups[0]["patient_ref"]
            && l["outcome"] != "error"),
        "{:?}",
        &lookups[..2]
    );
    // Every one was sent before the last is stored (outbox order): any second copy is in by now.
    let stored = stored_lookups(&stack.db).await?;
    assert_eq!(stored.len(), N, "one lookup per face file");
    let files = names(&face);
    assert_eq!(
        files.len(),
        N,
        "the face files are the terminal's: all still there"
    );
    for (name, bytes) in &written {
        assert_eq!(&std::fs::read(face.join(name))?, bytes, "{name} unchanged");
    }
    Ok(())
}

/// A UTF-8 result file as the terminal writes it in Shift_JIS: the declaration names the
/// encoding, the text is encoded.
fn in_shift_jis(utf8: &[u8]) -> anyhow::Result<Vec<u8>> {
    let text = std::str::from_utf8(utf8)?;
    let declared = text
        .replacen("encoding=\"UTF-8\"", "encoding=\"Shift_JIS\"", 1)
        .replacen("encoding=\"utf-8\"", "encoding=\"Shift_JIS\"", 1);
    anyhow::ensure!(
        declared != text,
        "the face file declares UTF-8: {}",
        &text[..80]
    );
    let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(&declared);
    anyhow::ensure!(!unmappable, "the face file's text fits Shift_JIS");
    Ok(bytes.into_owned())
}

/// The terminal writes a broken result (`--malformed-every 1`): the clerk gets a clear error,
/// not a hang; the lookup is recorded once; the broken file does not stay in `res`; and the next
/// lookup, once the terminal writes whole results again, is answered.
#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_terminal_result_is_a_clear_error_recorded_once() -> anyhow::Result<()> {
    const TIMEOUT_MS: u64 = 10_000;
    let (stack, _agent) = Stack::start(TIMEOUT_MS, &["--malformed-every", "1"]).await?;
    let people = sim_people("valid", 2).await?;

    let asked_at = std::time::Instant::now();
    let output = tokio::time::timeout(e2e::patience(), stack.site.lookup(&people[0])).await??;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Answered before the timeout would have run out: the broken file was read, not waited on.
    assert!(
        asked_at.elapsed() < std::time::Duration::from_millis(TIMEOUT_MS),
        "answered after {:?}: {text}",
        asked_at.elapsed()
    );
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| anyhow::anyhow!("no JSON answer ({e}): {text}"))?;
    assert_ne!(reply["outcome"], "valid", "{reply}");
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("読み取れません") || message.contains("could not be read"),
        "the clerk is told the answer could not be read: {reply}"
    );
    let lookups = await_events(&stack.db, CLINIC, "lookup", 1).await;
    assert_eq!(lookups[0]["outcome"], reply["outcome"], "{}", lookups[0]);
    assert!(names(&stack.folder.join("res")).is_empty());

    stack.knobs(&["--malformed-every", "0"]).await?;
    let output = stack.site.lookup(&people[1]).await?;
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(reply["outcome"], "valid", "{reply}");
    // Outbox order: a second copy of the first lookup would be stored before the second.
    await_events(&stack.db, CLINIC, "lookup", 2).await;
    let all = stored_lookups(&stack.db).await?;
    assert_eq!(all.len(), 2, "each lookup recorded once: {all:?}");
    Ok(())
}

/// The terminal answers after the agent gave up (`--late-every 1`, held past the timeout): the
/// clerk hears "terminal not answering" in time; the late result is taken out of `res` and never
/// recorded as a second lookup.
#[tokio::test(flavor = "multi_thread")]
async fn a_late_terminal_result_is_removed_and_never_recorded_twice() -> anyhow::Result<()> {
    const TIMEOUT_MS: u64 = 1_500;
    let (stack, _agent) =
        Stack::start(TIMEOUT_MS, &["--late-every", "1", "--late-ms", "3000"]).await?;
    let people = sim_people("valid", 2).await?;

    let output = stack.site.lookup(&people[0]).await?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("資格確認端末が応答しません"), "{text}");
    let lookups = await_events(&stack.db, CLINIC, "lookup", 1).await;
    assert_eq!(lookups[0]["outcome"], "unreachable", "{}", lookups[0]);
    // The terminal had taken the request (so it was not withdrawn) and answers late.
    let res = stack.folder.join("res");
    eventually("the late result in res", || async {
        (!names(&res).is_empty()).then_some(())
    })
    .await;
    eventually("the late result removed from res", || async {
        names(&res).is_empty().then_some(())
    })
    .await;

    stack.knobs(&["--late-every", "0"]).await?;
    let output = stack.site.lookup(&people[1]).await?;
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(reply["outcome"], "valid", "{reply}");
    await_events(&stack.db, CLINIC, "lookup", 2).await;
    let all = stored_lookups(&stack.db).await?;
    assert_eq!(all.len(), 2, "the late result was not recorded: {all:?}");
    let outcomes: Vec<&str> = all.iter().filter_map(|l| l["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["unreachable", "valid"], "{all:?}");
    Ok(())
}
