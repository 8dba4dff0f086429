//! The Windows certificate stores, read through the CryptoAPI, for the inventory: where a
//! terminal's electronic certificate usually is once imported from the portal's PKCS#12 file.
//!
//! ```toml
//! [[certificates.store]]
//! location = "local_machine"   # local_machine | current_user | service
//! name = "MY"                  # the store: MY (personal), CA, Root, ...
//! role = "terminal"            # terminal | ca
//! subject_contains = "OQS"     # optional: only certificates whose subject contains this
//! issuer_contains = "..."      # optional: ... or whose issuer does
//! ```
//!
//! `current_user` is the account the agent runs as (as the service, its virtual account
//! `NT SERVICE\onshi-fleet-agent`); `service` is the service's own store (`onshi-fleet-agent\MY`,
//! what the Certificates snap-in calls "Service account"). Stores are opened read-only and
//! never created. Elsewhere than on Windows a `[[certificates.store]]` is refused at start.

use serde::{Deserialize, Serialize};

use super::WatchRole;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchedStore {
    pub location: StoreLocation,
    pub name: String,
    pub role: WatchRole,
    #[serde(default)]
    pub subject_contains: Option<String>,
    #[serde(default)]
    pub issuer_contains: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreLocation {
    LocalMachine,
    CurrentUser,
    Service,
}

impl WatchedStore {
    /// How the inventory names it (`source`): `store:LocalMachine\MY`.
    pub fn label(&self) -> String {
        let location = match self.location {
            StoreLocation::LocalMachine => "LocalMachine",
            StoreLocation::CurrentUser => "CurrentUser",
            StoreLocation::Service => "Service",
        };
        format!("store:{location}\\{}", self.name)
    }

    /// Why it cannot be watched here, if it cannot.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "certificates.store name = {:?}: a system store's name (MY, CA, Root, ...)",
                self.name
            ));
        }
        if cfg!(windows) {
            Ok(())
        } else {
            Err(format!(
                "certificates.store {}: the Windows certificate store exists only on Windows; \
                 export the certificate (PEM, or PKCS#12 with format = \"p12\") and watch the file",
                self.label()
            ))
        }
    }

    /// Whether a certificate with this subject and issuer is one to report.
    pub(super) fn wants(&self, subject: &str, issuer: &str) -> bool {
        self.subject_contains
            .as_deref()
            .is_none_or(|s| subject.contains(s))
            && self
                .issuer_contains
                .as_deref()
                .is_none_or(|s| issuer.contains(s))
    }

    /// The DER of every certificate in the store.
    #[cfg(windows)]
    #[allow(unsafe_code)] // CryptoAPI calls; each block says what it relies on.
    pub(super) fn certificates(&self) -> Result<Vec<Vec<u8>>, String> {
        use windows_sys::Win32::Security::Cryptography::{
            CERT_CONTEXT, CERT_STORE_OPEN_EXISTING_FLAG, CERT_STORE_PROV_SYSTEM_W,
            CERT_STORE_READONLY_FLAG, CERT_SYSTEM_STORE_CURRENT_USER,
            CERT_SYSTEM_STORE_LOCAL_MACHINE, CERT_SYSTEM_STORE_LOCATION_SHIFT, CertCloseStore,
            CertEnumCertificatesInStore, CertOpenStore, X509_ASN_ENCODING,
        };
        /// `CERT_SYSTEM_STORE_SERVICES_ID`, which windows-sys does not shift into a flag.
        const SERVICES_ID: u32 = 5;
        let (location, name) = match self.location {
            StoreLocation::LocalMachine => (CERT_SYSTEM_STORE_LOCAL_MACHINE, self.name.clone()),
            StoreLocation::CurrentUser => (CERT_SYSTEM_STORE_CURRENT_USER, self.name.clone()),
            StoreLocation::Service => (
                SERVICES_ID << CERT_SYSTEM_STORE_LOCATION_SHIFT,
                format!("{}\\{}", crate::SERVICE_NAME, self.name),
            ),
        };
        let name: Vec<u16> = name.encode_utf16().chain([0]).collect();
        // SAFETY: `name` is a NUL-terminated UTF-16 string that outlives the call.
        let store = unsafe {
            CertOpenStore(
                CERT_STORE_PROV_SYSTEM_W,
                0,
                0,
                location | CERT_STORE_READONLY_FLAG | CERT_STORE_OPEN_EXISTING_FLAG,
                name.as_ptr().cast(),
            )
        };
        if store.is_null() {
            return Err(format!(
                "the store cannot be opened: {}",
                std::io::Error::last_os_error()
            ));
        }
        let mut found = Vec::new();
        let mut context: *const CERT_CONTEXT = std::ptr::null();
        loop {
            // SAFETY: `store` is open; passing the previous context frees it, and the loop
            // ends when the enumeration returns null (no context left to free).
            context = unsafe { CertEnumCertificatesInStore(store, context) };
            if context.is_null() {
                break;
            }
            // SAFETY: a non-null context from the enumeration is valid until the next call.
            let certificate = unsafe { &*context };
            if certificate.dwCertEncodingType & X509_ASN_ENCODING != 0 {
                // SAFETY: the context's encoded certificate is `cbCertEncoded` bytes long.
                let der = unsafe {
                    std::slice::from_raw_parts(
                        certificate.pbCertEncoded,
                        certificate.cbCertEncoded as usize,
                    )
                };
                found.push(der.to_vec());
            }
        }
        // SAFETY: opened above, no context of it left.
        unsafe { CertCloseStore(store, 0) };
        Ok(found)
    }

    #[cfg(not(windows))]
    pub(super) fn certificates(&self) -> Result<Vec<Vec<u8>>, String> {
        Err("the Windows certificate store exists only on Windows".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_named_and_filtered_as_configured() {
        let store: WatchedStore = toml::from_str(
            "location = \"local_machine\"\nname = \"MY\"\nrole = \"terminal\"\nsubject_contains = \"OQS\"\n",
        )
        .unwrap();
        assert_eq!(store.label(), r"store:LocalMachine\MY");
        assert!(store.wants("CN=OQS terminal 01", "CN=any"));
        assert!(!store.wants("CN=someone else", "CN=any"));
        assert_eq!(store.check().is_ok(), cfg!(windows));
        let bad = WatchedStore {
            name: r"MY\..".into(),
            ..store
        };
        assert!(bad.check().unwrap_err().contains("system store"));
        assert!(
            toml::from_str::<WatchedStore>("location = \"machine\"\nname = \"MY\"\nrole = \"ca\"")
                .is_err()
        );
    }
}
