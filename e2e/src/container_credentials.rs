//! A container-credentials endpoint on loopback, as ECS, EKS Pod Identity or SnapStart serve
//! one (`AWS_CONTAINER_CREDENTIALS_FULL_URI`): credentials as JSON to a caller that presents
//! the authorization token, a 401 to any other. It counts what it served.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use serde_json::json;
use tokio::{io::BufReader, net::TcpListener, task::JoinHandle};

use crate::http1::{read_request, write_response};

pub struct ContainerCredentials {
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
    pub url: String,
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
    pub token: String,
    served: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    server: JoinHandle<()>,
}

impl ContainerCredentials {
    /// Serves these temporary credentials, as valid for an hour.
    pub async fn start([access_key_id, secret_access_key, session_token]: &[String; 3]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let token = "container-authorization-token-7".to_owned();
        let expiration = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        let body = json!({
            "AccessKeyId": access_key_id,
            "SecretAccessKey": secret_access_key,
            "Token": session_token,
            "Expiration": expiration
                .format(&time::format_description::well_known::Rfc3339)
                .expect("a timestamp"),
        })
        .to_string();
        let (served, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (counted, denied) = (Arc::clone(&served), Arc::clone(&refused));
        let expected = token.clone();
        let server = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (read, mut write) = socket.into_split();
                let mut read = BufReader::new(read);
                while let Some(request) = read_request(&mut read).await {
                    let authorized = request.header("authorization") == Some(expected.as_str());
                    let (status, answer): (_, &[u8]) = match authorized {
                        true => {
                            counted.fetch_add(1, Ordering::SeqCst);
                            ("200 OK", body.as_bytes())
                        }
                        false => {
                            denied.fetch_add(1, Ordering::SeqCst);
                            ("401 Unauthorized", b"{}")
                        }
                    };
                    let headers = [("content-type", "application/json".to_owned())];
                    if write_response(&mut write, status, &headers, answer)
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        });
        Self {
            url: format!("http://127.0.0.1:{port}/v2/credentials/e2e"),
            token,
            served,
            refused,
            server,
        }
    }

    /// Requests answered with credentials.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// Requests without the authorization token.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for ContainerCredentials {
    fn drop(&mut self) {
        self.server.abort();
    }
}
