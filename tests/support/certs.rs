//! A throwaway CA and a server certificate it signed, for 127.0.0.1 and localhost.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// PEM files written into a server's directory.
pub struct CertFiles {
    /// The CA certificate: what clients trust (`ca_file`).
    pub ca: PathBuf,
    /// The server certificate (leaf only).
    pub cert: PathBuf,
    /// The server's private key (mode 0600).
    pub key: PathBuf,
    /// Key then certificate in one file, the form Postfix's `smtpd_tls_chain_files` takes.
    pub chain: PathBuf,
}

/// Generates a fresh CA and server certificate (ECDSA P-256) into `dir`.
pub fn generate(dir: &Path) -> CertFiles {
    let ca_key = KeyPair::generate().expect("generate CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mailbridge test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().expect("generate server key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = params
        .signed_by(&server_key, &issuer)
        .expect("sign server certificate");

    let files = CertFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        chain: dir.join("server-chain.pem"),
    };
    let key_pem = server_key.serialize_pem();
    write(&files.ca, &ca_cert.pem(), 0o644);
    write(&files.cert, &server_cert.pem(), 0o644);
    write(&files.key, &key_pem, 0o600);
    write(
        &files.chain,
        &format!("{key_pem}{}", server_cert.pem()),
        0o600,
    );
    files
}

fn write(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|err| panic!("chmod {}: {err}", path.display()));
}
