//! wss:// goes through rustls with the webpki roots: a server whose certificate no
//! root vouches for is refused during the handshake, as UNREACHABLE with the reason.

use std::sync::Arc;
use std::time::Duration;

use livekit_ffi::{FailureReason, Room, RoomOptions};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let der = rustls::pki_types::CertificateDer::from(cert.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                let _ = tls.shutdown().await;
            }
        }
    });

    let result = tokio::time::timeout(
        Duration::from_secs(10),
        Room::connect(
            &format!("wss://localhost:{port}"),
            "token",
            RoomOptions::default(),
        ),
    )
    .await
    .expect("the handshake failure is prompt");
    let err = match result {
        Ok(_) => panic!("an untrusted certificate must not be accepted"),
        Err(e) => e,
    };
    assert_eq!(err.failure_reason(), FailureReason::Unreachable, "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    server.abort();
}
