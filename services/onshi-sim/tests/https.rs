//! The simulator over real HTTPS: a dev PKI in a temporary folder, the simulator on
//! 127.0.0.1:0, and a hyper client presenting a terminal certificate of the test common CA.
//! The last tests run the `onshi-sim` binary itself.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet_tls::config::{ALPN_HTTP11, Identity, client_config, load_certificates};
use fleet_tls::devpki::{DevPki, DevPkiSpec, init};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use onshi_domain::codes::{
    CharacterCodeIdentifier, ProcessingResultStatus, QualificationValidity, SegmentOfResult,
};
use onshi_domain::ids::{InsurerNumber, MedicalInstitutionCode};
use onshi_domain::xml::{
    QualificationConfirmSearchInfo, QualificationConfirmationRequest,
    QualificationConfirmationResult, RequestHeader, XmlEncoding,
};
use onshi_sim::http::{BODY_LIMIT, OQS_SIQUC01_PATH, now_jst};
use onshi_sim::population::{Person, Population};
use onshi_sim::service::MAINTENANCE_INSURER;
use onshi_sim::{SimSettings, Simulator};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const INSTITUTION: &str = "3410712362";
const TERMINAL: &str = "T01";
const SEED: u64 = 42;
const PEOPLE: usize = 300;

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A dev PKI with one terminal of [`INSTITUTION`], in a folder removed on drop.
struct Pki {
    _dir: tempfile::TempDir,
    pki: DevPki,
}

fn dev_pki() -> Pki {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let spec = DevPkiSpec {
        terminals: vec![(INSTITUTION.to_string(), TERMINAL.to_string())],
        ..Default::default()
    };
    let pki = init(dir.path(), &spec).expect("the dev PKI is generated");
    Pki { _dir: dir, pki }
}

impl Pki {
    fn settings(&self, latency: Duration) -> SimSettings {
        let (tls_cert, tls_key) = self.pki.onshi_sim();
        SimSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls_cert,
            tls_key,
            client_ca: self.pki.common_ca(),
            seed: SEED,
            population: PEOPLE,
            latency,
        }
    }

    /// A client trusting the common CA, presenting the terminal certificate when `with_cert`.
    fn client(&self, with_cert: bool) -> HttpsClient {
        let roots = load_certificates(&self.pki.common_ca()).unwrap();
        let (cert, key) = self.pki.terminal(INSTITUTION, TERMINAL);
        let identity = Identity::from_pem_files(&cert, &key).unwrap();
        let identity = with_cert.then_some(&identity);
        let config = client_config(identity, &roots, &[ALPN_HTTP11]).unwrap();
        // hyper-rustls sets ALPN itself (http/1.1 from `enable_http1`) and refuses a config
        // that already has some.
        let mut config = (*config).clone();
        config.alpn_protocols.clear();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .build();
        Client::builder(TokioExecutor::new()).build(connector)
    }
}

/// A simulator serving in this test's runtime until dropped or stopped.
struct TestSim {
    pki: Pki,
    addr: SocketAddr,
    population: Arc<Population>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

async fn spawn_sim(latency: Duration) -> TestSim {
    let pki = dev_pki();
    let simulator = Simulator::build(&pki.settings(latency)).expect("the simulator builds");
    let addr = simulator.addr();
    assert_ne!(addr.port(), 0);
    let population = simulator.population().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(simulator.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestSim {
        pki,
        addr,
        population,
        stop: Some(stop),
        task: Some(task),
    }
}

struct Reply {
    status: StatusCode,
    content_type: String,
    body: Bytes,
}

impl Reply {
    fn result(&self) -> QualificationConfirmationResult {
        QualificationConfirmationResult::from_xml(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

impl TestSim {
    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    async fn post_with(
        &self,
        client: &HttpsClient,
        body: Vec<u8>,
    ) -> Result<Reply, hyper_util::client::legacy::Error> {
        let request = Request::post(self.url(OQS_SIQUC01_PATH))
            .header("content-type", "application/xml")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = client.request(request).await?;
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Ok(Reply {
            status,
            content_type,
            body,
        })
    }

    async fn post(&self, body: Vec<u8>) -> Reply {
        self.post_with(&self.pki.client(true), body)
            .await
            .expect("the request gets an answer")
    }

    fn person(&self, f: impl Fn(&Person) -> bool) -> Person {
        self.population
            .people()
            .iter()
            .find(|p| f(p))
            .expect("the population has such a person")
            .clone()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().unwrap();
        task.await.unwrap().expect("the simulator stops cleanly");
    }
}

impl Drop for TestSim {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn request_for(p: &Person) -> QualificationConfirmationRequest {
    QualificationConfirmationRequest {
        header: RequestHeader {
            qualification_confirmation_date: now_jst().date(),
            medical_institution_code: MedicalInstitutionCode::parse(INSTITUTION).unwrap(),
            arbitrary_file_identifier: Some("202604010001".to_string()),
        },
        search: QualificationConfirmSearchInfo {
            insurer_number: p.insurer_number.clone(),
            insured_card_symbol: p.symbol.clone(),
            insured_identification_number: p.number.clone(),
            insured_branch_number: p.branch.clone(),
            birthdate: p.birthdate.clone(),
            limit_application_certificate_related_cons_flg: false,
            arbitrary_identifier: None,
        },
    }
}

#[tokio::test]
async fn a_valid_person_is_confirmed_with_their_name() {
    let sim = spawn_sim(Duration::ZERO).await;
    let p = sim.person(|p| p.loss.is_none());
    let reply = sim.post(request_for(&p).to_xml(XmlEncoding::Utf8)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.content_type.starts_with("application/xml"),
        "{}",
        reply.content_type
    );
    let result = reply.result();
    assert_eq!(result.header.segment_of_result, SegmentOfResult::Normal);
    assert_eq!(result.header.medical_institution_code.as_str(), INSTITUTION);
    assert_eq!(
        result.header.character_code_identifier,
        CharacterCodeIdentifier::Utf8
    );
    assert_eq!(
        result.body.qualification_validity,
        Some(QualificationValidity::Valid)
    );
    assert_eq!(result.body.results.len(), 1);
    assert_eq!(
        result.body.results[0].name.as_deref(),
        Some(p.name.as_str())
    );
    assert_eq!(
        result.body.results[0].name_kana.as_deref(),
        Some(p.name_kana.as_str())
    );
    sim.stop().await;
}

#[tokio::test]
async fn invalid_unknown_and_maintenance_answers() {
    let sim = spawn_sim(Duration::ZERO).await;

    let lost = sim.person(|p| p.loss.is_some());
    let result = sim
        .post(request_for(&lost).to_xml(XmlEncoding::Utf8))
        .await
        .result();
    assert_eq!(
        result.body.qualification_validity,
        Some(QualificationValidity::Invalid)
    );
    assert_eq!(
        result.body.results[0].disqualification_date,
        lost.loss.as_ref().map(|l| l.date)
    );

    let p = sim.person(|p| p.loss.is_none());
    let mut wrong_birthdate = request_for(&p);
    wrong_birthdate.search.birthdate = onshi_domain::ids::BirthDate::parse("19000101").unwrap();
    let reply = sim.post(wrong_birthdate.to_xml(XmlEncoding::Utf8)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let result = reply.result();
    assert_eq!(
        result.body.qualification_validity,
        Some(QualificationValidity::NoMatch)
    );
    assert!(result.body.results.is_empty());

    let mut maintenance = request_for(&p);
    maintenance.search.insurer_number = InsurerNumber::parse(MAINTENANCE_INSURER).unwrap();
    let reply = sim.post(maintenance.to_xml(XmlEncoding::Utf8)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let result = reply.result();
    assert_eq!(result.header.segment_of_result, SegmentOfResult::Normal);
    assert_eq!(
        result.body.processing_result_status,
        Some(ProcessingResultStatus::Error)
    );
    assert_eq!(
        result.body.processing_result_code.as_deref(),
        Some("SIM-E0201")
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_at_the_handshake() {
    let sim = spawn_sim(Duration::ZERO).await;
    let p = sim.person(|_| true);
    let anonymous = sim.pki.client(false);
    let outcome = sim
        .post_with(&anonymous, request_for(&p).to_xml(XmlEncoding::Utf8))
        .await;
    assert!(
        outcome.is_err(),
        "a request without a client certificate got an answer: {:?}",
        outcome.map(|r| r.status)
    );
    // The server is still fine for a terminal with a certificate.
    let reply = sim.post(request_for(&p).to_xml(XmlEncoding::Utf8)).await;
    assert_eq!(reply.status, StatusCode::OK);
    sim.stop().await;
}

#[tokio::test]
async fn a_terminal_cannot_ask_for_another_institution() {
    let sim = spawn_sim(Duration::ZERO).await;
    let p = sim.person(|p| p.loss.is_none());
    let mut request = request_for(&p);
    let other = MedicalInstitutionCode::with_check_digit("131012345").unwrap();
    request.header.medical_institution_code = other;
    let reply = sim.post(request.to_xml(XmlEncoding::Utf8)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let result = reply.result();
    assert_eq!(
        result.header.segment_of_result,
        SegmentOfResult::AbnormalEnd
    );
    assert_eq!(result.header.error_code.as_deref(), Some("SIM-E0102"));
    assert!(result.body.results.is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn malformed_xml_gets_400_and_an_error_result() {
    let sim = spawn_sim(Duration::ZERO).await;
    let reply = sim
        .post(b"<?xml version=\"1.0\"?><XmlMsg><MessageHeader>".to_vec())
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let result = reply.result();
    assert_eq!(
        result.header.segment_of_result,
        SegmentOfResult::AbnormalEnd
    );
    assert_eq!(result.header.error_code.as_deref(), Some("SIM-E0001"));
    assert!(result.header.error_message.is_some());
    // Nothing could be read: the institution is the certificate's, the date today's.
    assert_eq!(result.header.medical_institution_code.as_str(), INSTITUTION);
    assert_eq!(
        result.header.qualification_confirmation_date,
        now_jst().date()
    );

    // Well-formed but incomplete: the header is echoed.
    let reply = sim
        .post(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><XmlMsg><MessageHeader>\
             <QualificationConfirmationDate>20260401</QualificationConfirmationDate>\
             <MedicalInstitutionCode>3410712362</MedicalInstitutionCode>\
             <ArbitraryFileIdentifier>REQ-7</ArbitraryFileIdentifier>\
             </MessageHeader></XmlMsg>"
                .as_bytes()
                .to_vec(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let result = reply.result();
    assert_eq!(result.header.error_code.as_deref(), Some("SIM-E0002"));
    assert_eq!(
        result.header.arbitrary_file_identifier.as_deref(),
        Some("REQ-7")
    );
    assert_eq!(
        result.header.qualification_confirmation_date,
        time::macros::date!(2026 - 04 - 01)
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_shift_jis_request_gets_a_shift_jis_answer() {
    let sim = spawn_sim(Duration::ZERO).await;
    let p = sim.person(|p| p.loss.is_none());
    let reply = sim
        .post(request_for(&p).to_xml(XmlEncoding::ShiftJis))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.content_type.contains("Shift_JIS"),
        "{}",
        reply.content_type
    );
    assert!(
        reply
            .body
            .starts_with(b"<?xml version=\"1.0\" encoding=\"Shift_JIS\"?>"),
        "{}",
        String::from_utf8_lossy(&reply.body[..60.min(reply.body.len())])
    );
    assert!(
        std::str::from_utf8(&reply.body).is_err(),
        "the kanji name is Shift_JIS, not UTF-8"
    );
    let result = reply.result();
    assert_eq!(
        result.header.character_code_identifier,
        CharacterCodeIdentifier::ShiftJis
    );
    assert_eq!(
        result.body.results[0].name.as_deref(),
        Some(p.name.as_str())
    );
    sim.stop().await;
}

#[tokio::test]
async fn an_oversized_body_gets_413() {
    let sim = spawn_sim(Duration::ZERO).await;
    let reply = sim.post(vec![b' '; BODY_LIMIT + 1]).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let result = reply.result();
    assert_eq!(result.header.error_code.as_deref(), Some("SIM-E0004"));
    sim.stop().await;
}

#[tokio::test]
async fn health_check_and_latency_knob() {
    let sim = spawn_sim(Duration::from_millis(300)).await;
    let client = sim.pki.client(true);
    let response = client
        .request(
            Request::get(sim.url("/healthz"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");

    let p = sim.person(|_| true);
    let started = Instant::now();
    let reply = sim.post(request_for(&p).to_xml(XmlEncoding::Utf8)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    sim.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------------

#[test]
fn population_command_prints_the_same_people_as_the_library() {
    let output = Command::new(env!("CARGO_BIN_EXE_onshi-sim"))
        .args(["population", "--seed", "7", "--count", "200", "--show", "5"])
        .args(["--kind", "valid"])
        .env_remove("ONSHI_SIM_SEED")
        .env_remove("ONSHI_SIM_POPULATION")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected: Vec<serde_json::Value> = Population::generate(7, 200)
        .people()
        .iter()
        .filter(|p| p.loss.is_none())
        .take(5)
        .map(|p| serde_json::to_value(p.card_view()).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines, expected);
    for line in &lines {
        assert_eq!(line["expected"], "valid");
        for field in [
            "insurer_number",
            "symbol",
            "number",
            "branch",
            "birthdate",
            "name",
        ] {
            assert!(line[field].is_string(), "{field} in {line}");
        }
    }
}

/// Kills the child process if the test fails before stopping it.
struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    fn get(&mut self) -> &mut std::process::Child {
        self.0.as_mut().unwrap()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn serve_prints_its_address_and_stops_on_sigterm() {
    let pki = dev_pki();
    let settings = pki.settings(Duration::ZERO);
    let child = Command::new(env!("CARGO_BIN_EXE_onshi-sim"))
        .arg("serve")
        .env("ONSHI_SIM_LISTEN", "127.0.0.1:0")
        .env("ONSHI_SIM_TLS_CERT", &settings.tls_cert)
        .env("ONSHI_SIM_TLS_KEY", &settings.tls_key)
        .env("ONSHI_SIM_CLIENT_CA", &settings.client_ca)
        .env("ONSHI_SIM_POPULATION", "100")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(Some(child));
    let mut line = String::new();
    BufReader::new(child.get().stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let announced: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let addr: SocketAddr = announced["https"].as_str().unwrap().parse().unwrap();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        let client = pki.client(true);
        let response = client
            .request(
                Request::get(format!("https://127.0.0.1:{}/healthz", addr.port()))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        response.status()
    });
    assert_eq!(status, StatusCode::OK);

    let killed = Command::new("kill")
        .args(["-TERM", &child.get().id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = child.0.take().unwrap().wait().unwrap();
    assert!(
        exit.success(),
        "onshi-sim exited with {exit:?} after SIGTERM"
    );
}
