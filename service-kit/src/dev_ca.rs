//! A development certificate authority (feature `dev-ca`): one CA and a
//! certificate per service, for the tests, the quickstart's `--tls` mode and
//! the compose deployment's one-shot certificate job. Never for production:
//! there, certificates come from the organisation's CA (docs/deployment.md).
//!
//! Each service certificate serves for both ends of mutual TLS (server and
//! client authentication) and names the service by DNS name, which is what a
//! peer verifies and what the authorization server matches a service's client
//! certificate against (RFC 8705 §2.1.2).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// How long the CA is valid, days: a development deployment's lifetime.
pub const CA_VALIDITY_DAYS: u64 = 3650;
/// How long a service certificate is valid, days: short, so renewal
/// (`auth-server admin dev-certs --renew`, picked up without a restart) is
/// something a deployment does, not something it forgets.
pub const SERVICE_VALIDITY_DAYS: u64 = 90;

/// Valid from the day before `now` (clock skew between machines) for `days`.
fn valid_for(params: &mut CertificateParams, now: i64, days: u64) {
    const DAY: u64 = 86_400;
    let today = u64::try_from(now).unwrap_or(0) / DAY;
    let date = |days_since_epoch: u64| {
        let (year, month, day) = civil_from_days(days_since_epoch);
        rcgen::date_time_ymd(year, month, day)
    };
    params.not_before = date(today.saturating_sub(1));
    params.not_after = date(today + days);
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (i32, u8, u8) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month as u8, day as u8)
}

/// A CA that issues service certificates.
pub struct DevCa {
    cert: Certificate,
    key: KeyPair,
    /// When certificates it issues start (Unix seconds).
    now: i64,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

/// A certificate and its private key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// Where a service's files were written.
#[derive(Debug, Clone)]
pub struct ServiceFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl DevCa {
    /// A new CA with a fresh ECDSA P-256 key, named `name`, valid from `now`
    /// (Unix seconds), as what it issues.
    pub fn new(name: &str, now: i64) -> anyhow::Result<Self> {
        Self::with_key(name, KeyPair::generate()?, now)
    }

    /// The CA of `name` whose key is `key_pem` (written by
    /// [`Self::write_ca_key`]): its certificate is made again, and what it
    /// issues verifies against the one first distributed (same name, same key).
    pub fn from_key_pem(name: &str, key_pem: &str, now: i64) -> anyhow::Result<Self> {
        Self::with_key(name, KeyPair::from_pem(key_pem).context("the CA key file")?, now)
    }

    fn with_key(name: &str, key: KeyPair, now: i64) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        valid_for(&mut params, now, CA_VALIDITY_DAYS);
        let cert = params.self_signed(&key)?;
        Ok(Self { cert, key, now })
    }

    /// Writes the CA's private key (mode 0600) to `path`: only the job that
    /// issues certificates reads it, never a service.
    pub fn write_ca_key(&self, path: &Path) -> anyhow::Result<()> {
        write_private(path, self.key.serialize_pem().as_bytes())
    }

    /// The CA certificate, PEM: what every service trusts.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for `service`, valid for `dns_names` and `ips`, for
    /// server and client authentication, with a fresh key.
    pub fn issue(
        &self,
        service: &str,
        dns_names: &[&str],
        ips: &[IpAddr],
    ) -> anyhow::Result<Issued> {
        let names =
            dns_names.iter().map(|n| (*n).to_owned()).chain(ips.iter().map(IpAddr::to_string));
        let mut params = CertificateParams::new(names.collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, service);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        valid_for(&mut params, self.now, SERVICE_VALIDITY_DAYS);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// Writes `ca.pem` into `dir`.
    pub fn write_ca(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.cert_pem())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Issues a certificate for `service` and writes `<service>.pem` and
    /// `<service>.key` (mode 0600) into `dir`.
    pub fn write_service(
        &self,
        dir: &Path,
        service: &str,
        dns_names: &[&str],
        ips: &[IpAddr],
    ) -> anyhow::Result<ServiceFiles> {
        let issued = self.issue(service, dns_names, ips)?;
        let files = ServiceFiles {
            cert: dir.join(format!("{service}.pem")),
            key: dir.join(format!("{service}.key")),
        };
        write_private(&files.key, issued.key_pem.as_bytes())?;
        std::fs::write(&files.cert, issued.cert_pem)
            .with_context(|| format!("writing {}", files.cert.display()))?;
        Ok(files)
    }
}

/// Writes a private key readable by its owner only (replacing the file
/// whole, so a reader never sees half of it).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.as_file().set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(bytes)?;
    file.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn day_counts_become_calendar_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_787), (2026, 11, 30));
    }
}
