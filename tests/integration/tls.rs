//! TLS: with a certificate and key, HTTPS and the TCP listeners speak TLS.

use crate::common;

use std::sync::Arc;

use common::{LineClient, TestServer, assert_line_error};

struct Certs {
    cert_pem: String,
    _dir: tempfile::TempDir,
    cert_path: std::path::PathBuf,
    key_path: std::path::PathBuf,
}

fn self_signed() -> Certs {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    let cert_pem = generated.cert.pem();
    std::fs::write(&cert_path, &cert_pem).unwrap();
    std::fs::write(&key_path, generated.signing_key.serialize_pem()).unwrap();
    Certs {
        cert_pem,
        _dir: dir,
        cert_path,
        key_path,
    }
}

/// A rustls client that trusts the test's self-signed certificate.
fn client_config(certs: &Certs) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::{CertificateDer, pem::PemObject as _};
    for cert in CertificateDer::pem_slice_iter(certs.cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

async fn tls_server(certs: &Certs) -> TestServer {
    let (cert, key) = (certs.cert_path.clone(), certs.key_path.clone());
    TestServer::start_with(move |c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
    })
    .await
}

#[tokio::test]
async fn https_serves_health_and_rest() {
    let certs = self_signed();
    let server = tls_server(&certs).await;
    assert!(server.handle().http_url().starts_with("https://"));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(certs.cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let health: serde_json::Value = client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let (status, body) = common::post_json(
        &client,
        &server.url("/api/v1/auth/register"),
        &serde_json::json!({"username": "tls-user", "password": "pw-secret"}),
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // Plain HTTP on the TLS port does not get through.
    let plain = reqwest::get(format!("http://{}/healthz", server.handle().http_addr)).await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
}

#[tokio::test]
async fn tcp_listeners_speak_tls() {
    let certs = self_signed();
    let server = tls_server(&certs).await;
    let config = client_config(&certs);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    for addr in [server.handle().dev_tcp_addr, server.handle().lobby_tcp_addr] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, tcp).await.expect("TLS handshake");
        let mut client = LineClient::over(tls);
        client.send_raw(b"{oops\n").await;
        assert_line_error(&client.recv().await.unwrap(), 100);
    }
}

#[tokio::test]
async fn wss_serves_the_game() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let certs = self_signed();
    let server = tls_server(&certs).await;
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(certs.cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let body = serde_json::json!({"username": "wss-user", "password": "pw-secret"});
    let (status, _) =
        common::post_json(&https, &server.url("/api/v1/auth/register"), &body, None).await;
    assert_eq!(status, 201);
    let (_, login) =
        common::post_json(&https, &server.url("/api/v1/auth/login"), &body, None).await;

    let config = client_config(&certs);
    let url = format!("wss://localhost:{}/game", server.handle().http_addr.port());
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(config))),
    )
    .await
    .expect("wss handshake");
    let frame = serde_json::json!({"type": "auth.login", "seq": 1, "ts": 0,
        "payload": {"token": login["access_token"]}});
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
    let reply = tokio::time::timeout(common::WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let reply: serde_json::Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert_eq!(reply["type"], "auth.ok", "{reply}");
}
