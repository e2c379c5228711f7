//! Listeners: the mutual-TLS one consumers use and the plain-HTTP one for development and
//! trusted internal callers. Each connection is served by hyper's HTTP/1.1 with keep-alive
//! and a header read timeout; shutdown stops accepting and lets calls in flight finish.
//! The admin listener (`crate::admin`), when configured, starts and stops with them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::access_log::{AccessJournal, DeliveryHandle};
use crate::admin::Admin;
use crate::blocks::BlockService;
use crate::config::{millis, Config, CrlCheck, HttpsListener};
use crate::identity::SenderIdAttribute;
use crate::metrics::Metrics;
use crate::policy::HostServices;
use crate::relay::{Caller, Relay};
use crate::reload::Reloader;
use crate::tls::Revocation;
use crate::tls_reload::{RefreshTls, TlsFiles};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Build(#[from] crate::relay::BuildError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("[blocks]: {0}")]
    Blocks(#[from] crate::blocks::BlocksError),
    #[error("[access_log]: {0}")]
    AccessLog(#[from] crate::access_log::JournalError),
    #[error("https.sender_id_attribute is not a usable attribute")]
    SenderAttribute,
    #[error("cannot watch the config and policy files: {0}")]
    Watch(String),
}

/// A started proxy: where it listens and how to stop it.
pub struct RunningProxy {
    pub https_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    /// The admin listener's address, when `[admin] listen` is set.
    pub admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    reloader: Arc<Reloader>,
    /// The access-log journal and its delivery to the log service, when configured.
    access_log: Option<(AccessJournal, Option<DeliveryHandle>)>,
}

impl RunningProxy {
    /// Stops accepting, waits for calls in flight (up to the configured grace), then
    /// stops access-log delivery and closes the journal (everything appended is on
    /// disk already; undelivered entries are sent after the next start).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        if let Some((journal, delivery)) = self.access_log {
            if let Some(delivery) = delivery {
                delivery.shutdown().await;
            }
            journal.close().await;
        }
    }

    /// The access-log journal, when configured (depth, delivery lag).
    pub fn access_journal(&self) -> Option<&AccessJournal> {
        self.access_log.as_ref().map(|(journal, _)| journal)
    }

    /// Waits until the listeners stop (they stop only on shutdown).
    pub async fn wait(&mut self) {
        for task in &mut self.tasks {
            let _ = task.await;
        }
    }

    /// Reloads the config or the policies whose files changed (SIGHUP, an admin call).
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }

    /// This proxy's metrics (what `/metrics` shows).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.reloader.metrics().clone()
    }

    /// A handle that triggers the shutdown from elsewhere (a signal handler).
    pub fn shutdown_trigger(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Connection-level settings shared by both listeners.
#[derive(Clone)]
struct Serving {
    /// Each call is handled by the relay in force when it arrives.
    reloader: Arc<Reloader>,
    header_read_timeout: Duration,
    grace: Duration,
    /// One permit per open consumer connection (`[proxy] max_connections`).
    connections: Arc<Semaphore>,
}

/// Binds the configured listeners and starts serving.
pub async fn start(config: &Config) -> Result<RunningProxy, StartError> {
    let metrics = Arc::new(Metrics::new());
    let (services, access_log, service_tls) = host_services(config, &metrics)?;
    let relay = Relay::build_with_metrics(config, services.clone(), metrics.clone()).await?;
    let reloader = Arc::new(Reloader::with_metrics(relay, config, services, metrics));
    for source in service_tls {
        reloader.watch_tls(source);
    }
    if config.policies.watch {
        reloader
            .watch(millis(config.policies.reload_debounce_ms))
            .map_err(|e| StartError::Watch(e.to_string()))?;
    }
    let serving = Serving {
        reloader: reloader.clone(),
        header_read_timeout: millis(config.proxy.header_read_timeout_ms),
        grace: millis(config.proxy.shutdown_grace_ms),
        connections: Arc::new(Semaphore::new(config.proxy.max_connections)),
    };
    reloader
        .metrics()
        .watch_connections(serving.connections.clone(), config.proxy.max_connections);
    let (shutdown, _) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut https_addr = None;
    let mut http_addr = None;

    if let Some(https) = &config.https {
        let tls = Arc::new(listener_tls(config, https)?);
        reloader.watch_tls(tls.clone());
        let attribute = SenderIdAttribute::parse(&https.sender_id_attribute)
            .ok_or(StartError::SenderAttribute)?;
        let listener = bind(https.listen).await?;
        https_addr = listener.local_addr().ok();
        let accept = TlsAccept {
            config: tls,
            attribute: Arc::new(attribute),
            handshake_timeout: millis(config.proxy.tls_handshake_timeout_ms),
        };
        info!(addr = ?https_addr, "mutual-TLS listener ready");
        tasks.push(tokio::spawn(accept_loop(
            listener,
            serving.clone(),
            Some(accept),
            shutdown.subscribe(),
        )));
    }
    if let Some(http) = &config.http {
        let listener = bind(http.listen).await?;
        http_addr = listener.local_addr().ok();
        info!(addr = ?http_addr, "plain-HTTP listener ready (development and trusted internal callers)");
        tasks.push(tokio::spawn(accept_loop(
            listener,
            serving.clone(),
            None,
            shutdown.subscribe(),
        )));
    }
    let mut admin_addr = None;
    if let Some(listen) = config.admin.listen {
        let listener = bind(listen).await?;
        admin_addr = listener.local_addr().ok();
        let admin = Admin::new(
            &config.admin,
            reloader.clone(),
            access_log.as_ref().map(|(journal, _)| journal.clone()),
        );
        info!(addr = ?admin_addr, "admin listener ready (/healthz /readyz /metrics /policies /reload)");
        tasks.push(tokio::spawn(crate::admin::serve(
            listener,
            Arc::new(admin),
            serving.header_read_timeout,
            serving.grace,
            shutdown.subscribe(),
        )));
    }
    Ok(RunningProxy {
        https_addr,
        http_addr,
        admin_addr,
        shutdown,
        tasks,
        reloader,
        access_log,
    })
}

/// The `[https]` listener's TLS configuration: its certificate, key, client CA and CRLs,
/// rebuilt when those files change. `rtp-proxy check` builds it too, to prove the files.
pub fn listener_tls(
    config: &Config,
    https: &HttpsListener,
) -> Result<TlsFiles<ServerConfig>, crate::tls::TlsError> {
    let (cert, key, client_ca) = (
        config.resolve(&https.cert),
        config.resolve(&https.key),
        config.resolve(&https.client_ca),
    );
    let revocation = Revocation {
        crls: https.crls.iter().map(|crl| config.resolve(crl)).collect(),
        end_entity_only: https.crl_check == CrlCheck::EndEntity,
        allow_unknown_status: https.allow_unknown_revocation_status,
        allow_expired: https.allow_expired_crls,
    };
    // A new CRL is a change like a renewed certificate: the listener is rebuilt.
    let mut files = vec![cert.clone(), key.clone(), client_ca.clone()];
    files.extend(revocation.crls.iter().cloned());
    let (presented, reported) = (cert.clone(), revocation.clone());
    Ok(TlsFiles::load("https listener", files, move || {
        crate::tls::server_config(&cert, &key, &client_ca, &revocation)
    })?
    .reporting(Some(presented), &reported))
}

/// The capabilities lent to policies: the block service client with its cache and the
/// access-log journal with its delivery task, and the TLS files of their upstream
/// clients. Made once per process; a config reload keeps them.
#[allow(clippy::type_complexity)]
fn host_services(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<
    (
        HostServices,
        Option<(AccessJournal, Option<DeliveryHandle>)>,
        Vec<Arc<dyn RefreshTls>>,
    ),
    StartError,
> {
    let mut services = HostServices::default();
    let mut tls: Vec<Arc<dyn RefreshTls>> = Vec::new();
    if let Some(blocks) = BlockService::from_config_with_metrics(config, metrics.clone())? {
        tls.push(blocks.upstream().clone());
        services.blocks = Some(Arc::new(blocks));
    }
    let mut access_log = None;
    if config.access_log.is_some() {
        let (journal, delivery) = AccessJournal::open(config)?;
        tls.extend(
            delivery
                .iter()
                .map(|task| task.upstream().clone() as Arc<dyn RefreshTls>),
        );
        services.access_log = Some(Arc::new(journal.clone()));
        access_log = Some((journal, delivery.map(|task| task.spawn())));
    }
    Ok((services, access_log, tls))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

#[derive(Clone)]
struct TlsAccept {
    /// The listener's certificate, key, client CA and revocation lists; each connection
    /// takes the version in force when it is accepted.
    config: Arc<TlsFiles<ServerConfig>>,
    attribute: Arc<SenderIdAttribute>,
    handshake_timeout: Duration,
}

async fn accept_loop(
    listener: TcpListener,
    serving: Serving,
    tls: Option<TlsAccept>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Each connection holds a watcher until it ends, so `graceful.shutdown()` waits for
    // them all; they watch the shutdown signal themselves (see `serve`).
    let graceful = GracefulShutdown::new();
    let listener_name = if tls.is_some() { "https" } else { "http" };
    let mut refused = Refusals::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Over the limit the connection is closed at once: memory and file
                    // descriptors stay bounded, and the caller (or the load balancer)
                    // retries elsewhere instead of waiting in a queue.
                    let Ok(permit) = serving.connections.clone().try_acquire_owned() else {
                        drop(stream);
                        refused.refuse(peer, listener_name, &serving);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let serving = serving.clone();
                    let tls = tls.clone();
                    let watcher = graceful.watcher();
                    let stop = shutdown.clone();
                    tokio::spawn(async move {
                        serve_connection(stream, peer, serving, tls, stop).await;
                        drop(watcher);
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(serving.grace, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(grace = ?serving.grace, "calls still in flight at the end of the shutdown grace period");
    }
}

/// Connections closed at the limit: counted each, logged at most once a minute.
#[derive(Default)]
struct Refusals {
    last_logged: Option<std::time::Instant>,
    since_logged: u64,
}

impl Refusals {
    fn refuse(&mut self, peer: SocketAddr, listener: &'static str, serving: &Serving) {
        serving.reloader.metrics().connection_refused(listener);
        self.since_logged += 1;
        let now = std::time::Instant::now();
        if self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60))
        {
            warn!(
                %peer,
                listener,
                refused = self.since_logged,
                "at [proxy] max_connections: new connections are closed until others end"
            );
            self.last_logged = Some(now);
            self.since_logged = 0;
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    serving: Serving,
    tls: Option<TlsAccept>,
    stop: watch::Receiver<bool>,
) {
    match tls {
        None => {
            let caller = Caller::Plain { peer };
            serve(TokioIo::new(stream), caller, &serving, stop).await
        }
        Some(tls) => {
            let acceptor = TlsAcceptor::from(tls.config.current());
            let handshake = tokio::time::timeout(tls.handshake_timeout, acceptor.accept(stream));
            let stream = match handshake.await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    // A revoked or expired certificate is a caller that once was
                    // trusted: worth an operator's attention, unlike scanners and
                    // dropped connections.
                    if refused_certificate(&e) {
                        warn!(%peer, error = %e, "TLS handshake refused: the client certificate");
                    } else {
                        debug!(%peer, error = %e, "TLS handshake refused");
                    }
                    return;
                }
                Err(_) => {
                    debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            // The certificate was verified in the handshake; read its HSA-id once per connection.
            let sender = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .ok_or_else(|| "no client certificate".to_owned())
                .and_then(|cert| tls.attribute.sender_id(cert).map_err(|e| e.to_string()));
            serve(TokioIo::new(stream), Caller::Tls { sender }, &serving, stop).await
        }
    }
}

/// Whether a handshake failed on a client certificate that chains to the client CA but
/// is revoked, expired or not yet valid, or whose revocation status is unknown.
fn refused_certificate(e: &std::io::Error) -> bool {
    use rustls::CertificateError as C;
    let Some(rustls::Error::InvalidCertificate(error)) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return false;
    };
    matches!(
        error,
        C::Revoked
            | C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. }
            | C::UnknownRevocationStatus
            | C::ExpiredRevocationList
            | C::ExpiredRevocationListContext { .. }
    )
}

/// Serves one connection until it ends. Once the shutdown begins, a call in progress is
/// finished and answered with `connection: close`, and an idle keep-alive connection is
/// closed at once. A connection that has had no call yet is not: it was accepted before
/// the listener closed, so its first request may be on its way (or written just as the
/// shutdown began) and closing would reset it unanswered; it is served that one call
/// (hyper's header read timeout still closes a silent one; the grace bounds it all).
async fn serve<I>(
    io: TokioIo<I>,
    caller: Caller,
    serving: &Serving,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let caller = Arc::new(caller);
    let reloader = serving.reloader.clone();
    // Holds a permit once the connection has had a call.
    let called = Arc::new(tokio::sync::Notify::new());
    let service = {
        let called = called.clone();
        service_fn(move |request| {
            called.notify_one();
            let relay = reloader.relay();
            let caller = caller.clone();
            async move { Ok::<_, std::convert::Infallible>(relay.handle(request, &caller).await) }
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(serving.header_read_timeout)
        .keep_alive(true)
        .serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    // The connection is polled first, so a request already readable when the shutdown
    // begins is read (and finished) rather than reset.
    let stopping = async {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    let result = tokio::select! {
        biased;
        result = connection.as_mut() => result,
        _ = stopping => {
            // Until the connection has had a call (at once if it has had one).
            let ended = tokio::select! {
                biased;
                result = connection.as_mut() => Some(result),
                _ = called.notified() => None,
            };
            match ended {
                Some(result) => result,
                None => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            }
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "connection ended with an error");
    }
}
