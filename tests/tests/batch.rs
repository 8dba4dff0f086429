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
