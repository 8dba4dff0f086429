//! Batch inquiry (一括照会) end to end: a Shift_JIS CSV as a Japanese spreadsheet saves it, the
//! `edge-agent batch` CLI, the running agent, onshi-sim and central.

use e2e::{
    AgentSite, Pki, TestDb, bin, eventually, https_endpoint, sim_people, site_code, start_central,
    start_sim, stored_lookups,
};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn a_shift_jis_csv_comes_back_row_by_row_and_every_sent_row_is_one_event_of_the_batch()
-> anyhow::Result<()> {
    let site = site_code("341071236");
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    let sim = start_sim(&pki).await?;
    let agent_site = AgentSite::new(
        &pki,
        &site,
        &https_endpoint(&central, "grpc"),
        &https_endpoint(&sim, "https"),
    )?;
    let _agent = agent_site.start().await?;

    let valid = sim_people("valid", 3).await?;
    let invalid = sim_people("invalid", 1).await?.remove(0);
    let mut csv = String::from("患者ID,保険者番号,記号,番号,枝番,生年月日\r\n");
    for (i, p) in valid.iter().chain([&invalid]).enumerate() {
        // Dates as a spreadsheet writes them.
        let date = format!(
            "{}/{}/{}",
            &p.birthdate[..4],
            &p.birthdate[4..6],
            &p.birthdate[6..]
        );
        csv.push_str(&format!(
            "P-{i:04},{},{},{},{},{date}\r\n",
            p.insurer_number, p.symbol, p.number, p.branch
        ));
    }
    // A wrong check digit: refused locally, never sent.
    csv.push_str("P-9999,138157,,1234,,19800101\r\n");
    let input = agent_site.dir().join("明日の予約.csv");
    std::fs::write(&input, encoding_rs::SHIFT_JIS.encode(&csv).0)?;
    let out = agent_site.dir().join("result.csv");

    let output = Command::new(bin("edge-agent"))
        .arg("--config")
        .arg(&agent_site.config)
        .args(["batch", "--json", "--csv"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .await?;
    assert!(
        output.status.success(),
        "batch failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(summary["rows"], 5, "{summary}");
    assert_eq!(summary["valid"], 3, "{summary}");
    assert_eq!(summary["invalid"], 1, "{summary}");
    assert_eq!(summary["error"], 1, "{summary}");
    // Not a terminal: plain counts, no bar.
    let progress = String::from_utf8_lossy(&output.stderr);
    assert!(progress.contains("5/5 rows"), "{progress}");

    // The results are Shift_JIS too, in file order, with the local row ids kept.
    let bytes = std::fs::read(&out)?;
    assert!(std::str::from_utf8(&bytes).is_err(), "written as Shift_JIS");
    let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(&bytes);
    assert!(!bad);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("行,患者ID,保険者番号"), "{}", lines[0]);
    let statuses: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').nth(7).unwrap_or_default())
        .collect();
    assert_eq!(statuses, ["有効", "有効", "有効", "無効", "エラー"]);
    assert!(lines[5].starts_with("5,P-9999,138157"), "{}", lines[5]);
    assert!(
        lines[5].contains("検証番号") || lines[5].contains("check digit"),
        "{}",
        lines[5]
    );

    // Central: one event per row that was sent, all of this batch; the row ids stayed home.
    let batch_id = summary["batch_id"].as_str().unwrap_or_default().to_string();
    let stored = eventually("4 batch lookups in central", || async {
        let stored = stored_lookups(&db).await.ok()?;
        (stored.len() == 4).then_some(stored)
    })
    .await;
    for event in &stored {
        assert_eq!(event["source"], "batch", "{event}");
        assert_eq!(event["batch_id"], batch_id.as_str(), "{event}");
        assert!(!event.to_string().contains("P-000"), "{event}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn national_mode_sends_one_two_step_batch_and_every_sent_row_is_one_event_of_the_batch()
-> anyhow::Result<()> {
    // A Tokyo site: its code's check digit covers only the six digits before it.
    let site = site_code("131011004");
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let central = start_central(&pki, &db).await?;
    // Long enough that the agent sees "in progress" at least once before the results.
    let sim = e2e::start_sim_with(&pki, &["--batch-delay-ms", "600"]).await?;
    let agent_site = AgentSite::new(
        &pki,
        &site,
        &https_endpoint(&central, "grpc"),
        &https_endpoint(&sim, "https"),
    )?;
    let _agent = agent_site.start().await?;

    let valid = sim_people("valid", 2).await?;
    let invalid = sim_people("invalid", 1).await?.remove(0);
    let mut csv = String::from("row_id,insurer_number,symbol,number,branch,birthdate\n");
    for (i, p) in valid.iter().chain([&invalid]).enumerate() {
        csv.push_str(&format!(
            "R-{i},{},{},{},{},{}\n",
            p.insurer_number, p.symbol, p.number, p.branch, p.birthdate
        ));
    }
    // Numbers the national side does not know: no matching qualification.
    csv.push_str("R-3,138156,,99999999,,19800101\n");
    // The insurer onshi-sim keeps "under maintenance": an error unit, the batch goes on.
    csv.push_str("R-4,06139992,1,1,01,19800101\n");
    // A wrong check digit: refused locally, never sent.
    csv.push_str("R-5,138157,,1234,,19800101\n");
    let input = agent_site.dir().join("national.csv");
    std::fs::write(&input, &csv)?;
    let out = agent_site.dir().join("national_result.csv");

    let output = Command::new(bin("edge-agent"))
        .arg("--config")
        .arg(&agent_site.config)
        .args(["batch", "--json", "--mode", "national", "--csv"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .await?;
    assert!(
        output.status.success(),
        "batch failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(summary["rows"], 6, "{summary}");
    assert_eq!(summary["valid"], 2, "{summary}");
    assert_eq!(summary["invalid"], 2, "{summary}");
    assert_eq!(summary["error"], 2, "{summary}");

    // Per-row results, in file order, UTF-8 as the input was.
    let text = std::fs::read_to_string(&out)?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7, "{text}");
    let statuses: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').nth(7).unwrap_or_default())
        .collect();
    assert_eq!(
        statuses,
        ["有効", "有効", "無効", "無効", "エラー", "エラー"],
        "{text}"
    );
    assert!(lines[5].contains("SIM-E0201"), "{}", lines[5]);
    assert!(
        lines[6].contains("検証番号") || lines[6].contains("check digit"),
        "{}",
        lines[6]
    );

    // Central: one lookup event per row that reached the national side (5 of 6), all of this
    // batch, all answered by the same two-step exchange (one latency, at least the delay).
    let batch_id = summary["batch_id"].as_str().unwrap_or_default().to_string();
    let stored = eventually("5 national batch lookups in central", || async {
        let stored = stored_lookups(&db).await.ok()?;
        (stored.len() == 5).then_some(stored)
    })
    .await;
    let mut outcomes: Vec<&str> = stored
        .iter()
        .map(|e| e["outcome"].as_str().unwrap_or_default())
        .collect();
    outcomes.sort_unstable();
    assert_eq!(
        outcomes,
        ["error", "invalid", "not_found", "valid", "valid"],
        "{stored:?}"
    );
    let latency = &stored[0]["latency_ms"];
    for event in &stored {
        assert_eq!(event["source"], "batch", "{event}");
        assert_eq!(event["batch_id"], batch_id.as_str(), "{event}");
        assert_eq!(&event["latency_ms"], latency, "{event}");
        assert!(event["latency_ms"].as_u64().unwrap_or(0) >= 600, "{event}");
        assert!(!event.to_string().contains("R-"), "{event}");
    }
    let maintenance = stored
        .iter()
        .find(|e| e["outcome"] == "error")
        .expect("the maintenance row's event");
    assert_eq!(maintenance["error_code"], "SIM-E0201", "{maintenance}");
    Ok(())
}
