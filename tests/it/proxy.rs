//! A fault-injecting TCP proxy on loopback, between provisiond and its
//! PostgreSQL (as toxiproxy does): it forwards every connection until told to
//! cut them all, then refuses new ones (accepts and closes them at once, as a
//! server that is restarting does) until healed.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::copy_bidirectional,
    net::{TcpListener, TcpStream},
    sync::watch,
};

pub struct Proxy {
    pub port: u16,
    down: Arc<AtomicBool>,
    /// Bumped at every cut: each forwarding task ends when it changes.
    cuts: watch::Sender<u64>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards 127.0.0.1:`port` to `upstream`.
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let (cuts, _) = watch::channel(0u64);
        let accepting = tokio::spawn({
            let (down, cuts) = (down.clone(), cuts.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if down.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    tokio::spawn(forward(client, upstream.clone(), cuts.subscribe()));
                }
            }
        });
        Self { port, down, cuts, accepting }
    }

    /// `url` (a PostgreSQL URL on 127.0.0.1:5432 or another port) through this proxy.
    pub fn url_through(&self, url: &str) -> String {
        let mut url = url::Url::parse(url).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.to_string()
    }

    /// Cuts every connection and refuses new ones: the database went away.
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Accepts connections again: the database is back.
    pub fn heal(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    /// Cuts for `outage`, then heals.
    pub async fn outage(&self, outage: Duration) {
        self.cut();
        tokio::time::sleep(outage).await;
        self.heal();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.cut();
    }
}

async fn forward(mut client: TcpStream, upstream: String, mut cuts: watch::Receiver<u64>) {
    let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        _ = copy_bidirectional(&mut client, &mut server) => {}
        _ = cuts.changed() => {}
    }
}
