//! `onshi-sim terminal` as a real process on real folders: request files written the way a
//! receipt computer writes them (a work folder, then a rename into `req`), results awaited in
//! `res` with a deadline, face results from `onshi-sim terminal present`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use onshi_domain::codes::{
    ConsentStatus, ProcessingResultStatus, QualificationValidity, ReferenceClassification,
    SegmentOfResult,
};
use onshi_domain::ids::MedicalInstitutionCode;
use onshi_domain::xml::{
    BulkInquiryAccepted, BulkInquiryRequest, BulkResult, BulkResultRequest, CheckupInfoRequest,
    CheckupInfoResult, DrugInfoRequest, DrugInfoResult, FileCategory, InfoRequestFlags,
    InfoRequestHeader, QualificationConfirmSearchInfo, QualificationConfirmationRequest,
    QualificationConfirmationResult, RequestHeader, XmlEncoding, YearMonth,
};
use onshi_sim::population::{Person, Population};

const INSTITUTION: &str = "0110112489";
const CORPUS: &str = "/work/shared/onshi-corpus";
/// How long any answer that should come may take on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(20);

fn people() -> Population {
    Population::generate(42, 1000)
}

fn institution() -> MedicalInstitutionCode {
    MedicalInstitutionCode::parse(INSTITUTION).unwrap()
}

/// A running `onshi-sim terminal` on a temporary folder, killed on drop.
struct Terminal {
    child: Child,
    dir: tempfile::TempDir,
    req: PathBuf,
    res: PathBuf,
    face: PathBuf,
}

fn spawn_terminal(extra: &[&str]) -> Terminal {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut child = Command::new(env!("CARGO_BIN_EXE_onshi-sim"))
        .arg("terminal")
        .arg("--folder")
        .arg(dir.path())
        .args(["--institution", INSTITUTION, "--batch-delay-ms", "300"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::piped())
        .spawn()
        .expect("onshi-sim starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(PATIENCE)
        .expect("the terminal prints its folders");
    let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON line");
    let path = |key: &str| PathBuf::from(v[key].as_str().expect(key));
    assert_eq!(v["institution"], INSTITUTION);
    assert!(path("knobs").ends_with(".sim/knobs.json"));
    Terminal {
        req: path("req"),
        res: path("res"),
        face: path("face"),
        child,
        dir,
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Terminal {
    /// Writes a request as a receipt computer does: whole, in its own work folder, then
    /// renamed into `req`. Returns when it appeared.
    fn submit(&self, name: &str, bytes: &[u8]) -> Instant {
        let work = self.dir.path().join("rececon-work");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(work.join(name), bytes).unwrap();
        std::fs::rename(work.join(name), self.req.join(name)).unwrap();
        Instant::now()
    }

    fn result_path(&self, request: &str) -> PathBuf {
        self.res.join(request.replacen("req_", "res_", 1))
    }

    /// The result of `request`, awaited up to [`PATIENCE`], then taken away (as a client does).
    fn take_result(&self, request: &str) -> Vec<u8> {
        let path = self.result_path(request);
        let bytes = await_file(&path, PATIENCE)
            .unwrap_or_else(|| panic!("no result for {request} within {PATIENCE:?}"));
        std::fs::remove_file(&path).unwrap();
        bytes
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits until the control file satisfies `ok`.
    fn await_knobs(&self, ok: impl Fn(&serde_json::Value) -> bool) {
        let path = self.dir.path().join(".sim/knobs.json");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let knobs: Option<serde_json::Value> = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if knobs.as_ref().is_some_and(&ok) {
                return;
            }
            assert!(Instant::now() < deadline, "knobs.json is {knobs:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn cli(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_onshi-sim"))
            .arg("terminal")
            .args(args)
            .arg("--folder")
            .arg(self.dir.path())
            .env("RUST_LOG", "warn")
            .output()
            .expect("onshi-sim runs");
        assert!(
            out.status.success(),
            "onshi-sim terminal {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("one JSON line")
    }
}

/// The file's content once it exists (polled every 10 ms up to `within`).
fn await_file(path: &Path, within: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(bytes) = std::fs::read(path) {
            return Some(bytes);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The files a client sees in `dir`: a writer's dot-named temporaries are not files yet.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = all_files_in(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn all_files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn search_for(p: &Person) -> QualificationConfirmSearchInfo {
    QualificationConfirmSearchInfo {
        insurer_number: p.insurer_number.clone(),
        insured_card_symbol: p.symbol.clone(),
        insured_identification_number: p.number.clone(),
        insured_branch_number: p.branch.clone(),
        birthdate: p.birthdate.clone(),
        limit_application_certificate_related_cons_flg: false,
        arbitrary_identifier: None,
    }
}

fn eligibility_request(p: &Person, file_id: &str) -> QualificationConfirmationRequest {
    QualificationConfirmationRequest {
        header: RequestHeader {
            qualification_confirmation_date: onshi_sim::http::now_jst().date(),
            medical_institution_code: institution(),
            arbitrary_file_identifier: Some(file_id.to_string()),
        },
        search: search_for(p),
    }
}

fn info_header(p: &Person, file_id: &str) -> InfoRequestHeader {
    InfoRequestHeader {
        medical_institution_code: institution(),
        insurer_number: p.insurer_number.clone(),
        insurance_card_symbol: p.symbol.clone(),
        insured_person_identification_number: p.number.clone(),
        branch_number: p.branch.clone(),
        arbitrary_file_identifier: Some(file_id.to_string()),
    }
}

/// Whether a drug or checkup result says it failed (a `ResultCode` other than 1). The one
/// place that knows how these results carry a failure.
fn drug_failed(r: &DrugInfoResult) -> bool {
    !r.outcome.result_code.is_success()
}

fn checkup_failed(r: &CheckupInfoResult) -> bool {
    !r.outcome.result_code.is_success()
}

/// The index and the person: valid, with a symbol and branch (an ordinary insured family).
fn valid_person(population: &Population, skip: usize) -> (usize, Person) {
    population
        .people()
        .iter()
        .enumerate()
        .filter(|(_, p)| p.validity().is_valid() && p.symbol.is_some() && p.branch.is_some())
        .nth(skip)
        .map(|(i, p)| (i, p.clone()))
        .expect("the population has such people")
}

#[test]
fn an_eligibility_request_is_answered_for_the_right_person_in_its_encoding() {
    let t = spawn_terminal(&[]);
    let population = people();
    let (_, p) = valid_person(&population, 0);
    let name = "OQSsiquc01req_202601150001.xml";
    t.submit(
        name,
        &eligibility_request(&p, "rc-0001").to_xml(XmlEncoding::ShiftJis),
    );
    let bytes = t.take_result(name);
    assert!(
        bytes.starts_with(b"<?xml") && String::from_utf8_lossy(&bytes[..64]).contains("Shift_JIS"),
        "answered in the request's encoding"
    );
    let result = QualificationConfirmationResult::from_xml(&bytes).expect("the codec reads it");
    assert_eq!(result.header.segment_of_result, SegmentOfResult::Normal);
    assert_eq!(
        result.header.arbitrary_file_identifier.as_deref(),
        Some("rc-0001")
    );
    assert_eq!(
        result.body.qualification_validity,
        Some(QualificationValidity::Valid)
    );
    assert_eq!(
        result.body.results[0].name.as_deref(),
        Some(p.name.as_str())
    );
    assert!(files_in(&t.req).is_empty(), "the request was taken");
}

#[test]
fn the_corpus_requests_are_answered() {
    let t = spawn_terminal(&[]);
    // A hand-written request: single quotes, spaces inside tags, an empty branch.
    let name = "OQSsiquc01req_single_quotes.xml";
    t.submit(
        name,
        &std::fs::read(Path::new(CORPUS).join(name)).expect("the corpus is at hand"),
    );
    let result = QualificationConfirmationResult::from_xml(&t.take_result(name))
        .expect("the codec reads the answer");
    assert_eq!(result.header.medical_institution_code, institution());
    match result.header.segment_of_result {
        // The invented patient is not in the population.
        SegmentOfResult::Normal => {
            assert_eq!(
                result.header.arbitrary_file_identifier.as_deref(),
                Some("clinic_11906")
            );
            assert_eq!(
                result.body.qualification_validity,
                Some(QualificationValidity::NoMatch)
            );
        }
        // A codec that does not read the hand-written shape yet: still an answer, with a code.
        other => {
            assert_eq!(other, SegmentOfResult::AbnormalEnd);
            assert!(result.header.error_code.is_some());
        }
    }

    // Drug and checkup requests as one client writes them (Shift_JIS, its own name scheme):
    // the invented patient is unknown, which is an answer in the result's shape.
    for name in [
        "YZKsiquc01req_02261201093012340.xml",
        "TKKsiquc01req_02261201093012340.xml",
    ] {
        t.submit(name, &std::fs::read(Path::new(CORPUS).join(name)).unwrap());
        let bytes = t.take_result(name);
        if name.starts_with("YZK") {
            let r = DrugInfoResult::from_xml(&bytes).expect("the drug result reads");
            assert!(drug_failed(&r));
        } else {
            let r = CheckupInfoResult::from_xml(&bytes).expect("the checkup result reads");
            assert!(checkup_failed(&r));
        }
    }

    // The corpus batch inquiry is accepted with a reception number.
    let name = "OQSmuquc01req_batch.xml";
    t.submit(name, &std::fs::read(Path::new(CORPUS).join(name)).unwrap());
    let accepted = BulkInquiryAccepted::from_xml(&t.take_result(name)).expect("reads");
    assert_eq!(accepted.segment_of_result, SegmentOfResult::Normal);
    assert_eq!(
        accepted.arbitrary_file_identifier.as_deref(),
        Some("bulk0001")
    );
    assert!(accepted.reception_number.is_some());
}

#[test]
fn a_batch_inquiry_is_answered_in_two_steps() {
    batch_in_two_steps(false);
}

/// `--zip-batch`: the results (and only they) come as a zip archive holding the result XML,
/// under the result's own name.
#[test]
fn zipped_batch_results_hold_the_result_file() {
    batch_in_two_steps(true);
}

fn batch_in_two_steps(zipped: bool) {
    let t = spawn_terminal(if zipped { &["--zip-batch"] } else { &[] });
    let population = people();
    let rows: Vec<Person> = (0..3).map(|i| valid_person(&population, i).1).collect();
    let request = BulkInquiryRequest {
        header: RequestHeader {
            qualification_confirmation_date: onshi_sim::http::now_jst().date(),
            medical_institution_code: institution(),
            arbitrary_file_identifier: Some("bulk-7".into()),
        },
        searches: rows
            .iter()
            .enumerate()
            .map(|(i, p)| QualificationConfirmSearchInfo {
                arbitrary_identifier: Some(format!("row{i}")),
                ..search_for(p)
            })
            .collect(),
    };
    let name = "OQSmuquc01req_202601150007.xml";
    t.submit(name, &request.to_xml(XmlEncoding::Utf8));
    let accepted = BulkInquiryAccepted::from_xml(&t.take_result(name)).unwrap();
    let reception = accepted.reception_number.expect("a reception number");

    // Step 2, asked again while it is in progress, as a client polls.
    let fetch = BulkResultRequest {
        medical_institution_code: institution(),
        reception_number: reception.clone(),
        arbitrary_file_identifier: None,
    }
    .to_xml(XmlEncoding::ShiftJis);
    let deadline = Instant::now() + PATIENCE;
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        let name = format!("OQSmuquc02req_fetch{attempt:04}.xml");
        t.submit(&name, &fetch);
        let file = t.take_result(&name);
        let xml = onshi_domain::zip::unzipped(&file, 1 << 24).expect("unzips");
        let result = BulkResult::from_xml(&xml).expect("reads");
        let ready = result.header.segment_of_result == SegmentOfResult::Normal;
        assert_eq!(
            onshi_domain::zip::is_zip(&file),
            zipped && ready,
            "zipped only with --zip-batch, and only the results"
        );
        if zipped && ready {
            let (entry, _) = onshi_domain::zip::read_xml_entry(&file, 1 << 24).unwrap();
            assert_eq!(entry, name.replace("req_", "res_"));
        }
        match result.header.segment_of_result {
            SegmentOfResult::InProgress if Instant::now() < deadline => continue,
            _ => break result,
        }
    };
    assert_eq!(result.header.segment_of_result, SegmentOfResult::Normal);
    assert_eq!(
        result.header.reception_number.as_deref(),
        Some(reception.as_str())
    );
    assert_eq!(result.units.len(), 3);
    for (i, (unit, p)) in result.units.iter().zip(&rows).enumerate() {
        assert_eq!(
            unit.processing_result_status,
            ProcessingResultStatus::Normal
        );
        let echo = unit.search_info.as_ref().unwrap();
        assert_eq!(
            echo.arbitrary_identifier.as_deref(),
            Some(format!("row{i}").as_str())
        );
        assert_eq!(unit.results[0].name.as_deref(), Some(p.name.as_str()));
    }
}

#[test]
fn drug_and_checkup_answers_follow_the_face_reader_consent() {
    let t = spawn_terminal(&[]);
    let population = people();
    let (holder, p) = valid_person(&population, 4);
    let drug = |id: &str| {
        DrugInfoRequest {
            header: info_header(&p, id),
            start_month: YearMonth::of(onshi_sim::http::now_jst().date()).minus_months(24),
            end_month: YearMonth::of(onshi_sim::http::now_jst().date()),
            file_category: FileCategory::FULL_XML,
            flags: InfoRequestFlags::as_clients_send(),
        }
        .to_xml(XmlEncoding::ShiftJis)
    };
    let name = "YZKsiquc01req_0226120109301001.xml";
    t.submit(name, &drug("before"));
    let refused = DrugInfoResult::from_xml(&t.take_result(name)).unwrap();
    assert!(
        drug_failed(&refused),
        "no consent yet: {:?}",
        refused.outcome
    );

    // The patient uses the face reader and agrees to share drugs and checkups.
    let out = t.cli(&[
        "present",
        "--holder",
        &holder.to_string(),
        "--consent",
        "drug,checkup",
    ]);
    let face_path = PathBuf::from(out["face"].as_str().unwrap());
    assert_eq!(face_path.parent(), Some(t.face.as_path()));
    let face_name = face_path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        face_name.starts_with("OQSsiquc01res_face_") && face_name.ends_with(".xml"),
        "{face_name}"
    );
    let stamp = &face_name[face_name.len() - 18..face_name.len() - 4];
    assert!(stamp.bytes().all(|b| b.is_ascii_digit()), "{face_name}");
    let face = QualificationConfirmationResult::from_xml(&std::fs::read(&face_path).unwrap())
        .expect("the face result reads as an eligibility result");
    assert_eq!(
        face.header.reference_classification,
        ReferenceClassification::MyNumberCard
    );
    assert_eq!(face.header.medical_institution_code, institution());
    let one = &face.body.results[0];
    assert_eq!(one.name.as_deref(), Some(p.name.as_str()));
    assert_eq!(
        one.pharmacists_info.as_ref().map(|g| g.cons_flg),
        Some(ConsentStatus::Given)
    );
    assert_eq!(
        one.specific_health_checkups_info
            .as_ref()
            .map(|g| g.cons_flg),
        Some(ConsentStatus::Given)
    );
    assert_eq!(
        one.diagnosis_info.as_ref().map(|g| g.cons_flg),
        Some(ConsentStatus::NotGiven)
    );

    let name = "YZKsiquc01req_0226120109301002.xml";
    t.submit(name, &drug("after"));
    let answered = DrugInfoResult::from_xml(&t.take_result(name)).unwrap();
    assert!(!drug_failed(&answered), "{:?}", answered.outcome);
    // The real result echoes no file identifier; it names the patient (QuaInf).
    assert_eq!(
        answered.patient.as_ref().and_then(|q| q.name.as_deref()),
        Some(p.name.as_str())
    );

    let name = "TKKsiquc01req_0226120109301003.xml";
    let checkup = CheckupInfoRequest {
        header: info_header(&p, "checkup"),
        start_month: None,
        end_month: None,
        file_category: FileCategory::XML,
        flags: InfoRequestFlags::as_clients_send(),
    };
    t.submit(name, &checkup.to_xml(XmlEncoding::Utf8));
    let answered = CheckupInfoResult::from_xml(&t.take_result(name)).unwrap();
    assert!(!checkup_failed(&answered), "{:?}", answered.outcome);
}

#[test]
fn face_files_are_unique_within_a_second() {
    let t = spawn_terminal(&[]);
    let started = Instant::now();
    let paths: Vec<String> = (0..8)
        .map(|i| {
            t.cli(&["present", "--holder", &i.to_string()])["face"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let names = files_in(&t.face);
    assert_eq!(names.len(), 8, "{names:?} ({:?})", started.elapsed());
    for path in paths {
        let bytes = std::fs::read(&path).unwrap();
        let r = QualificationConfirmationResult::from_xml(&bytes).unwrap();
        assert_eq!(
            r.header.reference_classification,
            ReferenceClassification::MyNumberCard
        );
    }
    // An unknown holder is refused, with the reason.
    let out = Command::new(env!("CARGO_BIN_EXE_onshi-sim"))
        .args(["terminal", "present", "--holder", "999999", "--folder"])
        .arg(t.dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("999999"));
}

#[test]
fn unreadable_requests_get_error_results() {
    let t = spawn_terminal(&["--incomplete-grace-ms", "200"]);
    let broken = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><XmlMsg><MessageHeader><Arbi";
    let name = "OQSsiquc01req_broken.xml";
    t.submit(name, broken);
    let result = QualificationConfirmationResult::from_xml(&t.take_result(name)).unwrap();
    assert_eq!(
        result.header.segment_of_result,
        SegmentOfResult::AbnormalEnd
    );
    assert_eq!(result.header.error_code.as_deref(), Some("SIM-E0001"));
    let message = result.header.error_message.unwrap();
    let japanese = message.find("要求電文").expect("a Japanese message");
    let english = message.find("the request").expect("then an English one");
    assert!(japanese < english, "{message}");

    // A well-formed file that is not a request: answered at once, no grace needed.
    let name = "OQSsiquc01req_other.xml";
    t.submit(name, b"<?xml version=\"1.0\"?><Invoice/>");
    let result = QualificationConfirmationResult::from_xml(&t.take_result(name)).unwrap();
    assert_eq!(
        result.header.segment_of_result,
        SegmentOfResult::AbnormalEnd
    );

    // A message kind the terminal software knows but the simulator does not answer.
    let name = "OQSsiimm01req_refnumber.xml";
    t.submit(name, b"<?xml version=\"1.0\"?><XmlMsg><MessageHeader><ArbitraryFileIdentifier>imm</ArbitraryFileIdentifier></MessageHeader><MessageBody/></XmlMsg>");
    let result = QualificationConfirmationResult::from_xml(&t.take_result(name)).unwrap();
    assert_eq!(
        result.header.segment_of_result,
        SegmentOfResult::AbnormalEnd
    );
    assert_eq!(
        result.header.arbitrary_file_identifier.as_deref(),
        Some("imm")
    );
    assert!(
        result
            .header
            .error_message
            .unwrap()
            .contains("not simulated")
    );

    let name = "YZKsiquc01req_broken.xml";
    t.submit(name, broken);
    let r = DrugInfoResult::from_xml(&t.take_result(name)).expect("a drug result");
    assert!(drug_failed(&r));

    // A request for another institution is the national system's refusal.
    let population = people();
    let (_, p) = valid_person(&population, 0);
    let mut other = eligibility_request(&p, "other");
    other.header.medical_institution_code = MedicalInstitutionCode::parse("3410712362").unwrap();
    let name = "OQSsiquc01req_elsewhere.xml";
    t.submit(name, &other.to_xml(XmlEncoding::Utf8));
    let result = QualificationConfirmationResult::from_xml(&t.take_result(name)).unwrap();
    assert_eq!(result.header.error_code.as_deref(), Some("SIM-E0102"));
}

#[test]
fn a_request_written_in_place_is_answered_once_whole() {
    let t = spawn_terminal(&["--incomplete-grace-ms", "3000"]);
    let population = people();
    let (_, p) = valid_person(&population, 1);
    let bytes = eligibility_request(&p, "slow-writer").to_xml(XmlEncoding::Utf8);
    let name = "OQSsiquc01req_inplace.xml";
    // A writer that does not rename: half the file, a pause, the rest.
    let path = t.req.join(name);
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&bytes[..bytes.len() / 2]).unwrap();
        f.flush().unwrap();
        assert!(await_file(&t.result_path(name), Duration::from_millis(300)).is_none());
        f.write_all(&bytes[bytes.len() / 2..]).unwrap();
    }
    let result = QualificationConfirmationResult::from_xml(&t.take_result(name)).unwrap();
    assert_eq!(result.header.segment_of_result, SegmentOfResult::Normal);
    assert_eq!(
        result.header.arbitrary_file_identifier.as_deref(),
        Some("slow-writer")
    );
}

#[test]
fn a_silent_terminal_answers_nothing_until_it_is_back() {
    let t = spawn_terminal(&["--silent"]);
    let population = people();
    let (_, p) = valid_person(&population, 2);
    let name = "OQSsiquc01req_silent.xml";
    t.submit(
        name,
        &eligibility_request(&p, "silent").to_xml(XmlEncoding::Utf8),
    );
    assert!(
        await_file(&t.result_path(name), Duration::from_millis(1500)).is_none(),
        "a silent terminal answers nothing"
    );
    assert_eq!(
        files_in(&t.req),
        [name],
        "and leaves the request where it is"
    );

    let knobs = t.cli(&["knobs", "--silent", "false"]);
    assert_eq!(knobs["silent"], false);
    let result = QualificationConfirmationResult::from_xml(&t.take_result(name)).unwrap();
    assert_eq!(
        result.header.arbitrary_file_identifier.as_deref(),
        Some("silent")
    );

    // The same with signals, as `serve` takes them: SIGUSR1 down, SIGUSR2 back.
    t.signal("USR1");
    t.await_knobs(|k| k["silent"] == true);
    let name = "OQSsiquc01req_silent2.xml";
    t.submit(
        name,
        &eligibility_request(&p, "silent2").to_xml(XmlEncoding::Utf8),
    );
    assert!(await_file(&t.result_path(name), Duration::from_millis(800)).is_none());
    t.signal("USR2");
    let result = QualificationConfirmationResult::from_xml(&t.take_result(name)).unwrap();
    assert_eq!(
        result.header.arbitrary_file_identifier.as_deref(),
        Some("silent2")
    );
}

#[test]
fn latency_delays_every_answer() {
    let latency = Duration::from_millis(700);
    let t = spawn_terminal(&["--latency-ms", "700"]);
    let population = people();
    let (_, p) = valid_person(&population, 3);
    for i in 0..2 {
        let name = format!("OQSsiquc01req_latency{i}.xml");
        let sent = t.submit(
            &name,
            &eligibility_request(&p, "slow").to_xml(XmlEncoding::Utf8),
        );
        let path = t.result_path(&name);
        await_file(&path, PATIENCE).expect("answered");
        assert!(
            sent.elapsed() >= latency,
            "answered after {:?}",
            sent.elapsed()
        );
    }
}

#[test]
fn late_and_malformed_answers() {
    // Every second answer lands after 1.5 s (after a client with a 1 s timeout gave up);
    // every third answer is broken.
    let t = spawn_terminal(&[
        "--late-every",
        "2",
        "--late-ms",
        "1500",
        "--malformed-every",
        "3",
    ]);
    let population = people();
    let (_, p) = valid_person(&population, 5);
    let mut outcomes = Vec::new();
    for i in 1..=3 {
        let name = format!("OQSsiquc01req_knob{i}.xml");
        let sent = t.submit(
            &name,
            &eligibility_request(&p, &format!("k{i}")).to_xml(XmlEncoding::Utf8),
        );
        let bytes = t.take_result(&name);
        outcomes.push((
            sent.elapsed(),
            QualificationConfirmationResult::from_xml(&bytes).is_ok(),
        ));
    }
    assert!(outcomes[0].0 < Duration::from_millis(1500), "{outcomes:?}");
    assert!(outcomes[1].0 >= Duration::from_millis(1500), "{outcomes:?}");
    assert!(outcomes[0].1 && outcomes[1].1, "{outcomes:?}");
    assert!(
        !outcomes[2].1,
        "the third answer is malformed: {outcomes:?}"
    );
}

#[test]
fn a_burst_of_200_requests_gets_200_answers_none_twice() {
    let t = spawn_terminal(&["--requests", "move"]);
    let population = people();
    let eligible: Vec<Person> = population
        .people()
        .iter()
        .filter(|p| p.validity().is_valid())
        .take(200)
        .cloned()
        .collect();
    assert_eq!(eligible.len(), 200);
    let names: Vec<String> = (0..200)
        .map(|i| format!("OQSsiquc01req_20260115{i:04}.xml"))
        .collect();
    for (i, (name, p)) in names.iter().zip(&eligible).enumerate() {
        t.submit(
            name,
            &eligibility_request(p, &format!("burst-{i}")).to_xml(XmlEncoding::Utf8),
        );
    }
    // Take every result as it comes, counting each name.
    let mut taken: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + PATIENCE * 2;
    while taken.len() < 200 && Instant::now() < deadline {
        for name in files_in(&t.res) {
            let path = t.res.join(&name);
            let bytes = std::fs::read(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            let r = QualificationConfirmationResult::from_xml(&bytes).unwrap();
            let i: usize = name["OQSsiquc01res_20260115".len()..][..4].parse().unwrap();
            assert_eq!(
                r.header.arbitrary_file_identifier,
                Some(format!("burst-{i}")),
                "{name}"
            );
            assert_eq!(
                r.body.results[0].name.as_deref(),
                Some(eligible[i].name.as_str())
            );
            *taken.entry(name).or_default() += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(taken.len(), 200, "every request answered");
    assert!(taken.values().all(|&n| n == 1));
    // Nothing comes again: a bounded look for a second answer.
    let quiet_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < quiet_until {
        assert!(files_in(&t.res).is_empty(), "{:?}", files_in(&t.res));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        all_files_in(&t.res).is_empty(),
        "no temporary file left behind"
    );
    assert!(all_files_in(&t.req).is_empty());
    assert_eq!(
        files_in(&t.req.join("done")).len(),
        200,
        "moved, not removed"
    );
}
