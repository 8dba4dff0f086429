//! The development PKI: every CA and certificate a local stack or a test needs.
//!
//! Layout under the output folder (keys are written owner-only, 0600, and never committed):
//!
//! ```text
//! chain-ca.{pem,key}            the chain's CA: signs central, operators and the agent sub-CA
//! agent-ca.{pem,key}            the agent sub-CA (under the chain CA): signs agents only, and
//!                               is the key central holds to sign renewals
//! central.{pem,key}             central's server certificate (localhost, 127.0.0.1, ::1)
//! agents/<site>.{pem,key}       one client certificate per agent, naming its site (agent CA)
//! operators/<name>.{pem,key}    JSON API clients
//! common-ca.{pem,key}           test stand-in for the online-claims network common CA
//! onshi-sim.{pem,key}           onshi-sim's server certificate (signed by the common CA)
//! terminals/<code>-<id>.{pem,key} qualification terminal certificates (common CA)
//! jlis-ca.{pem,key}             test stand-in for J-LIS, issuer of My Number card certificates
//! patient-hash.key              the chain secret for patient keyed hashes (64 hex characters)
//! ```
//!
//! A real chain keeps its CA offline and enrolls agents with tokens (deploy/pki/README.md); this
//! module is for development, tests and demos only.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::identity::{OPERATOR_URI_PREFIX, SITE_URI_PREFIX, TERMINAL_URI_PREFIX};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error(
        "{0} already holds a PKI; refusing to overwrite its CA keys (remove the folder for a fresh one)"
    )]
    AlreadyExists(PathBuf),
    #[error("{0} is not a valid name for a certificate file")]
    BadName(String),
}

/// What to issue besides the CAs.
#[derive(Debug, Clone, Default)]
pub struct DevPkiSpec {
    /// Site codes, one agent certificate each.
    pub sites: Vec<String>,
    pub operators: Vec<String>,
    /// (institution code, terminal id) pairs for onshi-sim client auth.
    pub terminals: Vec<(String, String)>,
    /// Extra DNS names or IP addresses for the central and onshi-sim server certificates.
    pub extra_server_names: Vec<String>,
}

/// Paths inside a dev PKI folder.
#[derive(Debug, Clone)]
pub struct DevPki {
    root: PathBuf,
}

impl DevPki {
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn chain_ca(&self) -> PathBuf {
        self.root.join("chain-ca.pem")
    }
    /// The agent sub-CA's certificate and key (the key is what central signs renewals with).
    pub fn agent_ca(&self) -> (PathBuf, PathBuf) {
        self.pair("agent-ca")
    }
    pub fn central(&self) -> (PathBuf, PathBuf) {
        self.pair("central")
    }
    pub fn agent(&self, site: &str) -> (PathBuf, PathBuf) {
        self.pair(&format!("agents/{site}"))
    }
    pub fn operator(&self, name: &str) -> (PathBuf, PathBuf) {
        self.pair(&format!("operators/{name}"))
    }
    pub fn common_ca(&self) -> PathBuf {
        self.root.join("common-ca.pem")
    }
    pub fn onshi_sim(&self) -> (PathBuf, PathBuf) {
        self.pair("onshi-sim")
    }
    pub fn terminal(&self, institution_code: &str, terminal_id: &str) -> (PathBuf, PathBuf) {
        self.pair(&format!("terminals/{institution_code}-{terminal_id}"))
    }
    pub fn jlis_ca(&self) -> PathBuf {
        self.root.join("jlis-ca.pem")
    }
    pub fn patient_hash_key(&self) -> PathBuf {
        self.root.join("patient-hash.key")
    }
    fn pair(&self, stem: &str) -> (PathBuf, PathBuf) {
        (
            self.root.join(format!("{stem}.pem")),
            self.root.join(format!("{stem}.key")),
        )
    }
}

/// Creates a new dev PKI under `root`. Refuses to overwrite an existing one.
pub fn init(root: &Path, spec: &DevPkiSpec) -> Result<DevPki, PkiError> {
    let pki = DevPki::at(root);
    if pki.chain_ca().exists() {
        return Err(PkiError::AlreadyExists(root.to_path_buf()));
    }
    create_private_dir(root)?;

    let chain_ca = new_ca("onshi-fleet dev chain CA")?;
    chain_ca.write(root, "chain-ca")?;
    // Agents get their certificates from a sub-CA of their own: the key central holds online
    // to sign renewals can then mint agent certificates only, never an operator's.
    let agent_ca = new_sub_ca(&chain_ca, "onshi-fleet dev agent CA")?;
    agent_ca.write(root, "agent-ca")?;
    let common_ca =
        new_ca("onshi-fleet test common CA (オンライン請求ネットワーク共通認証局 stand-in)")?;
    common_ca.write(root, "common-ca")?;
    let jlis_ca = new_ca("onshi-fleet test J-LIS CA")?;
    jlis_ca.write(root, "jlis-ca")?;

    let mut secret = [0u8; 32];
    fill_random(&mut secret);
    write_file(
        &pki.patient_hash_key(),
        format!("{}\n", crate::identity::hex(&secret)).as_bytes(),
        0o600,
    )?;

    let mut server_names = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    server_names.extend(spec.extra_server_names.iter().cloned());
    // central also presents its own certificate as a client to its health check (`central
    // health`, the Kubernetes probe), hence clientAuth beside serverAuth.
    let mut central = server_leaf("central", &server_names)?;
    central
        .extended_key_usages
        .push(ExtendedKeyUsagePurpose::ClientAuth);
    chain_ca.issue(central)?.write(root, "central")?;
    common_ca
        .issue(server_leaf("onshi-sim", &server_names)?)?
        .write(root, "onshi-sim")?;

    for site in &spec.sites {
        issue_agent_with(&agent_ca, root, site)?;
    }
    for name in &spec.operators {
        let stem = checked_stem(name)?;
        let params = client_leaf(
            &format!("operator {name}"),
            &format!("{OPERATOR_URI_PREFIX}{name}"),
        )?;
        chain_ca
            .issue(params)?
            .write(root, &format!("operators/{stem}"))?;
    }
    for (code, terminal) in &spec.terminals {
        let stem = format!("{code}-{terminal}");
        checked_stem(&stem)?;
        let params = client_leaf(
            &format!("terminal {code} {terminal}"),
            &format!("{TERMINAL_URI_PREFIX}{code}:{terminal}"),
        )?;
        common_ca
            .issue(params)?
            .write(root, &format!("terminals/{stem}"))?;
    }
    Ok(pki)
}

/// Re-issues the terminal certificate `terminals/<code>-<terminal>.{pem,key}` with the dev
/// common CA, valid from an hour ago until `lifetime` from now (tests of expiry alerts).
pub fn issue_terminal_valid_for(
    root: &Path,
    code: &str,
    terminal: &str,
    lifetime: Duration,
) -> Result<(PathBuf, PathBuf), PkiError> {
    let ca = LoadedCa::load(root, "common-ca")?;
    let stem = format!("{code}-{terminal}");
    checked_stem(&stem)?;
    let mut params = client_leaf(
        &format!("terminal {code} {terminal}"),
        &format!("{TERMINAL_URI_PREFIX}{code}:{terminal}"),
    )?;
    set_validity(&mut params, lifetime);
    ca.issue(params)?
        .write(root, &format!("terminals/{stem}"))?;
    Ok(DevPki::at(root).terminal(code, terminal))
}

/// Issues (or re-issues) the certificate of one more agent with an existing dev agent CA.
pub fn issue_agent(root: &Path, site: &str) -> Result<(PathBuf, PathBuf), PkiError> {
    let ca = LoadedCa::load(root, "agent-ca")?;
    issue_agent_with(&ca, root, site)?;
    Ok(DevPki::at(root).agent(site))
}

fn issue_agent_with(ca: &impl CaSigner, root: &Path, site: &str) -> Result<(), PkiError> {
    let stem = checked_stem(site)?;
    ca.issue(agent_leaf(site)?)?
        .write(root, &format!("agents/{stem}"))
}

/// Re-issues `agents/<site>.{pem,key}` valid from an hour ago until `lifetime` from now (tests
/// of certificate renewal).
pub fn issue_agent_valid_for(
    root: &Path,
    site: &str,
    lifetime: Duration,
) -> Result<(PathBuf, PathBuf), PkiError> {
    let now = OffsetDateTime::now_utc();
    issue_agent_between(root, site, now - Duration::hours(1), now + lifetime)
}

/// Re-issues `agents/<site>.{pem,key}` with the dev agent CA, valid from `not_before` to
/// `not_after` (tests of revoking a site's certificates issued before a time).
pub fn issue_agent_between(
    root: &Path,
    site: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(PathBuf, PathBuf), PkiError> {
    let ca = LoadedCa::load(root, "agent-ca")?;
    let stem = checked_stem(site)?;
    let mut params = agent_leaf(site)?;
    set_validity(&mut params, Duration::ZERO);
    params.not_before = not_before;
    params.not_after = not_after;
    ca.issue(params)?.write(root, &format!("agents/{stem}"))?;
    Ok(DevPki::at(root).agent(site))
}

/// Issues a client certificate naming `uri` (a SAN URI, e.g. an operator's) with the dev CA
/// `ca_stem` ("chain-ca", "agent-ca") into `<stem>.{pem,key}`: what a stolen CA key could
/// mint, for tests of what each listener trusts.
pub fn issue_client_with(
    root: &Path,
    ca_stem: &str,
    uri: &str,
    stem: &str,
) -> Result<(PathBuf, PathBuf), PkiError> {
    let ca = LoadedCa::load(root, checked_stem(ca_stem)?)?;
    let stem = checked_stem(stem)?;
    ca.issue(client_leaf(stem, uri)?)?.write(root, stem)?;
    Ok((
        root.join(format!("{stem}.pem")),
        root.join(format!("{stem}.key")),
    ))
}

/// An agent's client certificate: its site as a SAN URI, client authentication only.
pub(crate) fn agent_leaf(site: &str) -> Result<CertificateParams, rcgen::Error> {
    client_leaf(&format!("site {site}"), &format!("{SITE_URI_PREFIX}{site}"))
}

/// Issues a My Number card's user-authentication certificate with the dev PKI's test J-LIS CA
/// (`jlis-ca.{pem,key}` under `root`) for the card's public key `spki_der` (a DER
/// SubjectPublicKeyInfo; the key never leaves the card). Like a real one, the certificate names
/// nobody: the subject carries only `serial_number` (the virtual card's holder reference).
/// Returns the certificate in DER.
pub fn issue_card_certificate(
    root: &Path,
    spki_der: &[u8],
    serial_number: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<Vec<u8>, PkiError> {
    let ca = LoadedCa::load(root, "jlis-ca")?;
    let public_key = rcgen::SubjectPublicKeyInfo::from_der(spki_der)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "JP");
    dn.push(DnType::CustomDnType(vec![2, 5, 4, 5]), serial_number);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    let mut serial = [0u8; 16];
    fill_random(&mut serial);
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let cert = params.signed_by(&public_key, &ca.issuer)?;
    Ok(cert.der().to_vec())
}

/// File names come from site codes and names typed by an operator: keep them to a safe set.
fn checked_stem(name: &str) -> Result<&str, PkiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(name)
    } else {
        Err(PkiError::BadName(name.to_string()))
    }
}

struct Issued {
    cert_pem: String,
    key_pem: String,
}

impl Issued {
    fn write(&self, root: &Path, stem: &str) -> Result<(), PkiError> {
        let cert = root.join(format!("{stem}.pem"));
        let key = root.join(format!("{stem}.key"));
        if let Some(parent) = cert.parent() {
            create_private_dir(parent)?;
        }
        write_file(&cert, self.cert_pem.as_bytes(), 0o644)?;
        write_file(&key, self.key_pem.as_bytes(), 0o600)
    }
}

trait CaSigner {
    fn issue(&self, params: CertificateParams) -> Result<Issued, PkiError>;
}

struct NewCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl NewCa {
    fn write(&self, root: &Path, stem: &str) -> Result<(), PkiError> {
        Issued {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.issuer.key().serialize_pem(),
        }
        .write(root, stem)
    }
}

impl CaSigner for NewCa {
    fn issue(&self, params: CertificateParams) -> Result<Issued, PkiError> {
        sign(params, &self.issuer)
    }
}

struct LoadedCa {
    issuer: Issuer<'static, KeyPair>,
}

impl LoadedCa {
    fn load(root: &Path, stem: &str) -> Result<Self, PkiError> {
        let read = |path: PathBuf| {
            fs::read_to_string(&path).map_err(|source| PkiError::Io { path, source })
        };
        let cert = read(root.join(format!("{stem}.pem")))?;
        let key = KeyPair::from_pem(&read(root.join(format!("{stem}.key")))?)?;
        Ok(Self {
            issuer: Issuer::from_ca_cert_pem(&cert, key)?,
        })
    }
}

impl CaSigner for LoadedCa {
    fn issue(&self, params: CertificateParams) -> Result<Issued, PkiError> {
        sign(params, &self.issuer)
    }
}

fn sign(params: CertificateParams, issuer: &Issuer<'_, KeyPair>) -> Result<Issued, PkiError> {
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn new_ca(common_name: &str) -> Result<NewCa, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, Duration::days(3650));
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(NewCa {
        issuer: Issuer::new(params, key),
        cert_pem: cert.pem(),
    })
}

/// A CA under `parent` that may sign leaves only (path length 0).
fn new_sub_ca(parent: &NewCa, common_name: &str) -> Result<NewCa, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, Duration::days(1825));
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &parent.issuer)?;
    Ok(NewCa {
        issuer: Issuer::new(params, key),
        cert_pem: cert.pem(),
    })
}

fn server_leaf(common_name: &str, names: &[String]) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = name(common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, Duration::days(397));
    Ok(params)
}

fn client_leaf(common_name: &str, uri: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.subject_alt_names = vec![SanType::URI(uri.try_into()?)];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, Duration::days(365));
    Ok(params)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "onshi-fleet development");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Valid from an hour ago (clocks that disagree a little) for `lifetime`, with a new serial.
pub(crate) fn set_validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = OffsetDateTime::now_utc();
    // An hour of slack for clocks that disagree a little.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + lifetime;
    let mut serial = [0u8; 16];
    fill_random(&mut serial);
    serial[0] &= 0x7f; // keep the serial positive
    params.serial_number = Some(SerialNumber::from_slice(&serial));
}

fn fill_random(bytes: &mut [u8]) {
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), bytes)
        .expect("the system random number generator is available");
}

fn create_private_dir(path: &Path) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    fs::create_dir_all(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Identity, load_certificates};
    use crate::identity::{site_of, terminal_of};

    #[test]
    fn init_issues_certificates_naming_their_holders() {
        let dir = tempfile::tempdir().unwrap();
        let spec = DevPkiSpec {
            sites: vec!["1311234566".into()],
            terminals: vec![("1311234566".into(), "T01".into())],
            operators: vec!["ops".into()],
            ..Default::default()
        };
        let pki = init(dir.path(), &spec).unwrap();
        let (cert, key) = pki.agent("1311234566");
        let id = Identity::from_pem_files(&cert, &key).unwrap();
        assert_eq!(site_of(id.leaf()).unwrap(), "1311234566");
        let (cert, _) = pki.terminal("1311234566", "T01");
        let leaf = &load_certificates(&cert).unwrap()[0];
        assert_eq!(
            terminal_of(leaf).unwrap(),
            ("1311234566".to_string(), "T01".to_string())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "private keys must be owner-only");
        }
        assert!(matches!(
            init(dir.path(), &spec),
            Err(PkiError::AlreadyExists(_))
        ));
    }

    #[test]
    fn names_that_could_escape_the_folder_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &DevPkiSpec::default()).unwrap();
        assert!(matches!(
            issue_agent(dir.path(), "../x"),
            Err(PkiError::BadName(_))
        ));
    }
}
