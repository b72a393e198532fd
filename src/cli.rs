//! The `passerelle` command: `serve`, `migrate`, `seed`, `schema`, `import`, `export`, `sync`, `pq`,
//! and the administration of OAuth2 clients, signing keys and data-sharing agreements.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::app::{now, App};
use crate::auth::{clients, keys, sharing};
use crate::config::{Config, LogFormat};
use crate::domain::{seed, synthetic};
use crate::storage::writes;

#[derive(Parser)]
#[command(
    name = "passerelle",
    version,
    about = "GraphQL hub for social-action partners' data",
    after_help = "Environment (it overrides the configuration file):
  DATABASE_URL        the database: sqlite://FILE or postgres://USER@HOST/DB
                      (default sqlite://passerelle.db, a file in the working directory);
                      PASSERELLE_DATABASE_URL works too
  PASSERELLE_LISTEN   the address `serve` listens on (default 127.0.0.1:8080)
  PASSERELLE_CONFIG   a TOML configuration file (see deploy/passerelle.example.toml);
                      every key in it can be set as PASSERELLE_<KEY>

First steps: docs/getting-started.md"
)]
struct Cli {
    /// A TOML configuration file; `PASSERELLE_*` environment variables override it.
    #[arg(long, global = true, env = "PASSERELLE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply migrations and serve GraphQL over HTTP.
    Serve {
        /// Load the demo data (the partners' source documents) and the synthetic research
        /// sample (partner `sample`, invented figures) before serving.
        #[arg(long)]
        demo: bool,
    },
    /// Apply pending database migrations.
    Migrate,
    /// Load the demo data: the facts of the partners' source documents. Idempotent.
    Seed {
        /// Generate the deterministic synthetic benchmark data set instead.
        #[arg(long)]
        synthetic: bool,
        /// With --synthetic: 1 is about 100 partners, 100k actions and 1M outcomes.
        #[arg(long, default_value_t = 0.01, requires = "synthetic")]
        scale: f64,
        /// Also load the synthetic research sample: partner `sample`, 24 invented figures in
        /// people, enough for research aggregates to publish cells.
        #[arg(long, conflicts_with = "synthetic")]
        research_sample: bool,
    },
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Import a partner's NDJSON or CSV record file: every row is checked first, then all are
    /// written in one transaction, or none. Importing the same file again changes nothing.
    Import {
        /// The partner that owns the records (its slug).
        #[arg(long)]
        partner: String,
        /// `ndjson` or `csv`; by default from the file extension.
        #[arg(long)]
        format: Option<String>,
        file: PathBuf,
    },
    /// Run one pass of the configured pull connectors (all, or one partner's).
    Sync { partner: Option<String> },
    /// Write every record of one type (actors, actions, outcomes, partnerships) to stdout.
    Export {
        kind: String,
        /// `ndjson` (default) or `csv`.
        #[arg(long, default_value = "ndjson")]
        format: String,
        /// Export what this partner sees; public records only without it.
        #[arg(long)]
        partner: Option<String>,
    },
    /// Persisted queries.
    Pq {
        #[command(subcommand)]
        command: PqCommand,
    },
    /// Manage partners: the organisations whose data Passerelle holds.
    #[command(subcommand)]
    Partner(PartnerCommand),
    /// Manage OAuth2 clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage the keys that sign access tokens.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage data-sharing agreements between partners.
    #[command(subcommand)]
    Sharing(SharingCommand),
}

#[derive(Subcommand)]
enum PartnerCommand {
    /// Register a partner. SLUG: 2-40 of a-z, 0-9 and `-`, starting with a letter, not ending
    /// with `-`, and neither a `-`-prefix of another partner's slug nor the other way round
    /// (the records a partner writes have ids starting with `SLUG-`).
    Create {
        slug: String,
        /// The partner's display name.
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// List partners (slug, state, name).
    List,
    /// Change a partner's name or description.
    Update {
        slug: String,
        #[arg(long)]
        name: Option<String>,
        /// The new description; an empty one clears it.
        #[arg(long)]
        description: Option<String>,
    },
    /// Retire a partner: its clients are revoked and no new client can be created for it.
    /// Its records stay.
    Retire { slug: String },
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register a client; prints its id and secret (the secret is shown only this once).
    Create {
        /// The partner the client acts for, e.g. `caravan`.
        #[arg(
            long,
            required_unless_present = "research_org",
            conflicts_with = "research_org"
        )]
        partner: Option<String>,
        /// A research organisation instead of a partner (a slug such as `ined`): the client may
        /// hold only the `research` scope and sees public rows only.
        #[arg(long)]
        research_org: Option<String>,
        /// Space-separated scopes: read read:sensitive write research admin introspect.
        #[arg(long)]
        scopes: String,
    },
    /// List clients (never their secrets).
    List,
    /// Revoke a client: no new tokens, and its current tokens stop working.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Start signing with a new key; older keys keep verifying until their tokens expire.
    Rotate,
    /// List signing keys.
    List,
}

#[derive(Subcommand)]
enum SharingCommand {
    /// GRANTOR shares its `partners`-visible records with GRANTEE.
    Grant {
        grantor: String,
        grantee: String,
        /// First day, `YYYY-MM-DD` (default: today).
        #[arg(long)]
        from: Option<String>,
        /// Last day, `YYYY-MM-DD` (default: open-ended).
        #[arg(long)]
        until: Option<String>,
    },
    /// End an agreement: not in force from a day on (default: today, so at once).
    End {
        id: String,
        #[arg(long)]
        on: Option<String>,
    },
    /// List agreements.
    List,
}

#[derive(Subcommand)]
enum PqCommand {
    /// Import an apollo-persisted-query-manifest v1 file as trusted documents. Idempotent.
    Import { file: PathBuf },
    /// List stored documents (trusted ones first) and, from the audit log, which clients ran
    /// each operation.
    List,
    /// Remove a document by id: running servers stop accepting it within 5 seconds.
    Remove { id: String },
    /// Hold callers to trusted documents, without a restart (beside `persisted_only`).
    #[command(subcommand)]
    Only(OnlyCommand),
}

#[derive(Subcommand)]
enum OnlyCommand {
    /// A client id or partner slug may run only trusted documents from now on (within a second).
    Add { caller: String },
    /// Let a caller send query text again.
    Remove { caller: String },
    /// The callers held to trusted documents: the setting's and the database's.
    List,
}

/// Runs the command line; returns the process's exit code: 0 on success, 1 when the command
/// failed, 2 for a configuration that cannot be loaded.
pub fn main() -> i32 {
    let cli = Cli::parse();
    if let Command::Schema = cli.command {
        print!("{}", crate::graphql::sdl());
        return 0;
    }
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("passerelle: {e}");
            return 2;
        }
    };
    init_logging(&config);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        builder.worker_threads(config.worker_threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("passerelle: cannot start the async runtime: {e}");
            return 1;
        }
    };
    // The runtime is dropped on return, after its blocking threads have ended.
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("passerelle: {e:#}");
            1
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    // Colours only for a person at a terminal, never into a file or a journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(command: Command, mut config: Config) -> anyhow::Result<()> {
    let database = config.database_url.to_string();
    if let Command::Serve { demo: true } = command {
        // So that GraphiQL works for someone trying Passerelle out.
        config.public_introspection = true;
    }
    // The port first, before migrating and seeding: a port in use fails at once, naming it.
    let listener = match command {
        Command::Serve { .. } => {
            // SIGTERM and SIGINT are caught from now on: a stop while migrating or seeding
            // is a graceful stop once serving begins, not a kill.
            let stop = stop_signals()?;
            let listen = config.listen;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| anyhow::anyhow!("{listen}: {e}"))?;
            // With port 0, the public URL derived from `listen` names the port chosen.
            config.listen = listener.local_addr()?;
            Some((listener, stop))
        }
        _ => None,
    };
    let app = App::start(config)
        .await
        .map_err(|e| anyhow::anyhow!("{} ({database})", e.message()))?;
    match command {
        Command::Migrate => {
            println!("migrations applied on {database}");
        }
        Command::Seed {
            synthetic: false,
            research_sample,
            ..
        } => {
            let report = seed::load_demo(&app.store, now()).await?;
            println!("demo data loaded into {database}: {}", describe(&report));
            if research_sample {
                let changed = crate::domain::research_sample::load(&app.store, now()).await?;
                println!(
                    "synthetic research sample (partner `{}`, invented figures): {changed} records created or updated",
                    crate::domain::research_sample::PARTNER
                );
            }
        }
        Command::Seed {
            synthetic: true,
            scale,
            ..
        } => {
            if !(scale > 0.0 && scale <= 100.0) {
                anyhow::bail!("--scale must be greater than 0 and at most 100, not {scale}");
            }
            let size = synthetic::Size::for_scale(scale);
            let started = std::time::Instant::now();
            let (mut created, mut unchanged) = (0, 0);
            for p in 0..size.partners {
                let batch = synthetic::partner_batch(p, size);
                let now = now();
                let effect = app
                    .store
                    .run(move |c| writes::insert_synthetic(c, &batch, &now))
                    .await?;
                match effect {
                    writes::WriteEffect::Unchanged => unchanged += 1,
                    _ => created += 1,
                }
                if (p + 1) % 10 == 0 || p + 1 == size.partners {
                    eprintln!("  {}/{} partners", p + 1, size.partners);
                }
            }
            let actions = size.partners * size.actions_per_partner;
            println!(
                "synthetic data (scale {scale}) in {database}: {} partners ({created} created, {unchanged} already there), \
                 {actions} actions, {} outcomes, {actions} partnerships, in {:.1}s",
                size.partners,
                actions * synthetic::OUTCOMES_PER_ACTION,
                started.elapsed().as_secs_f64()
            );
        }
        Command::Serve { demo } => {
            if app.keys.use_configured_algorithm().await? {
                tracing::info!(
                    algorithm = app.config.token_signing_algorithm.name(),
                    "signing with a new key of the configured algorithm; older keys verify their tokens until they expire"
                );
            }
            if demo {
                let report = seed::load_demo(&app.store, now()).await?;
                tracing::info!(report = %describe(&report), "demo data loaded");
                crate::domain::research_sample::load(&app.store, now()).await?;
                tracing::info!(
                    partner = crate::domain::research_sample::PARTNER,
                    "synthetic research sample loaded (invented figures)"
                );
            }
            let Some((listener, stop)) = listener else {
                anyhow::bail!("no listener");
            };
            let addr = listener.local_addr()?;
            println!("Passerelle is serving {database}");
            println!("  GraphQL:  http://{addr}/graphql");
            println!("  GraphiQL: http://{addr}/graphiql");
            crate::http::serve(app, listener, stop).await?;
            tracing::info!("shutdown complete");
            println!("Passerelle stopped.");
        }
        Command::Pq {
            command: PqCommand::List,
        } => pq_list(&app).await?,
        Command::Pq {
            command: PqCommand::Remove { id },
        } => {
            if !app.persisted.remove(&id).await? {
                anyhow::bail!("no persisted query `{id}`");
            }
            audit_cli(&app, "passerelle pq remove", Default::default(), &id).await?;
            println!("persisted query {id} removed; running servers stop accepting it within 5 s");
        }
        Command::Pq {
            command: PqCommand::Only(c),
        } => pq_only(&app, c).await?,
        Command::Pq {
            command: PqCommand::Import { file },
        } => {
            let manifest = crate::persisted::manifest::Manifest::read(&file)?;
            let effects = app.persisted.import(manifest).await?;
            let count = |want| effects.iter().filter(|(_, e)| *e == want).count();
            println!(
                "{} trusted documents from {}: {} created, {} updated, {} unchanged",
                effects.len(),
                file.display(),
                count(crate::storage::writes::WriteEffect::Created),
                count(crate::storage::writes::WriteEffect::Updated),
                count(crate::storage::writes::WriteEffect::Unchanged),
            );
        }
        Command::Import {
            partner,
            format,
            file,
        } => import_file(&app, partner, format, file).await?,
        Command::Export {
            kind,
            format,
            partner,
        } => export(&app, &kind, &format, partner).await?,
        Command::Sync { partner } => {
            let reports =
                crate::connectors::sync_all(&app.store, &app.config.connectors, partner.as_deref())
                    .await?;
            for r in reports {
                println!(
                    "synced {}: {} pages, {} records ({} created, {} updated, {} unchanged)",
                    r.partner, r.pages, r.records, r.created, r.updated, r.unchanged
                );
            }
        }
        Command::Schema => {}
        Command::Partner(c) => partner_command(&app, c).await?,
        Command::Client(c) => client_command(&app, c).await?,
        Command::Keys(c) => keys_command(&app, c).await?,
        Command::Sharing(c) => sharing_command(&app, c).await?,
    }
    Ok(())
}

async fn client_command(app: &App, command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Create {
            partner,
            research_org,
            scopes,
        } => {
            let owner = partner.clone().or_else(|| research_org.clone());
            let created = app
                .store
                .run(move |c| match (partner, research_org) {
                    (Some(p), _) => clients::create(c, &p, &scopes),
                    (None, Some(org)) => clients::create_research(c, &org, &scopes),
                    (None, None) => Err(crate::error::Error::BadRequest(
                        "give --partner or --research-org".into(),
                    )),
                })
                .await
                .map_err(field_errors)?;
            audit_cli(
                app,
                "passerelle client create",
                owner.into_iter().collect(),
                &format!("created {}", created.id),
            )
            .await?;
            println!("client_id:     {}", created.id);
            println!("client_secret: {}", created.secret);
            println!("Store the secret now: it is not kept and cannot be shown again.");
        }
        ClientCommand::List => {
            for c in app.store.run(clients::list).await? {
                let state = match &c.revoked_at {
                    Some(at) => format!("revoked {at}"),
                    None => "active".into(),
                };
                let scopes: Vec<&str> = c.scopes.iter().map(String::as_str).collect();
                println!(
                    "{}\t{}\t{}\t{}\tcreated {}",
                    c.id,
                    c.partner,
                    scopes.join(" "),
                    state,
                    c.created_at
                );
            }
        }
        ClientCommand::Revoke { id } => {
            let shown = id.clone();
            if app.store.run(move |c| clients::revoke(c, &id)).await? {
                println!("client {shown} revoked");
            } else {
                anyhow::bail!("no active client {shown}");
            }
        }
    }
    Ok(())
}

async fn pq_list(app: &App) -> anyhow::Result<()> {
    use crate::storage::persisted as db;
    let docs = app.store.run(db::list).await?;
    let names: Vec<String> = docs
        .iter()
        .filter_map(|d| d.operation_name.clone())
        .collect();
    let usage = app.store.run(move |c| db::usage(c, &names)).await?;
    for d in &docs {
        let name = d.operation_name.as_deref().unwrap_or("-");
        let kind = if d.trusted { "trusted" } else { "automatic" };
        println!("{}\t{kind}\t{name}\tcreated {}", d.id, d.created_at);
        for (_, client, partner, requests, last) in usage
            .iter()
            .filter(|(operation, ..)| d.operation_name.as_deref() == Some(operation.as_str()))
        {
            println!(
                "  used by {} ({}): {requests} requests, last {}",
                client.as_deref().unwrap_or("-"),
                partner.as_deref().unwrap_or("-"),
                last.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(())
}

async fn pq_only(app: &App, command: OnlyCommand) -> anyhow::Result<()> {
    use crate::storage::persisted as db;
    match command {
        OnlyCommand::Add { caller } => {
            let c = caller.clone();
            let added = app
                .store
                .run(move |conn| db::add_only(conn, &c, &now()))
                .await?;
            audit_cli(app, "passerelle pq only add", Default::default(), &caller).await?;
            if added {
                println!("{caller} may run only trusted documents (running servers apply it within a second)");
            } else {
                println!("{caller} was already held to trusted documents");
            }
        }
        OnlyCommand::Remove { caller } => {
            let c = caller.clone();
            if !app.store.run(move |conn| db::remove_only(conn, &c)).await? {
                if app.config.persisted_only.contains(&caller) {
                    anyhow::bail!(
                        "{caller} is held by the persisted_only setting: change the configuration"
                    );
                }
                anyhow::bail!("{caller} is not held to trusted documents");
            }
            audit_cli(
                app,
                "passerelle pq only remove",
                Default::default(),
                &caller,
            )
            .await?;
            println!("{caller} may send query text again (within a second)");
        }
        OnlyCommand::List => {
            for c in &app.config.persisted_only {
                println!("{c}\tsetting persisted_only");
            }
            for c in app.store.run(db::only_callers).await? {
                println!("{c}\tpq only add");
            }
        }
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT; both are caught from the call on (the handlers are
/// registered here, not when the future is first polled).
fn stop_signals() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| anyhow::anyhow!("cannot listen for SIGTERM: {e}"))?;
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| anyhow::anyhow!("cannot listen for SIGINT: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = interrupt.recv() => {},
        }
    })
}

/// A `BAD_USER_INPUT` error as `field: message` lines; other errors as they are.
fn field_errors(e: crate::error::Error) -> anyhow::Error {
    match e {
        crate::error::Error::Invalid(errors) => anyhow::anyhow!(
            "{}",
            errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => other.into(),
    }
}

/// Appends an audit entry for an administration command (no client: the operator at the
/// machine), naming the partners it concerned.
async fn audit_cli(
    app: &App,
    operation: &'static str,
    partners: std::collections::BTreeSet<String>,
    outcome: &str,
) -> anyhow::Result<()> {
    let outcome = outcome.to_owned();
    app.store
        .run(move |c| {
            crate::auth::audit::record(
                c,
                &crate::domain::Viewer::anonymous(),
                operation,
                &partners,
                &outcome,
            )
        })
        .await?;
    Ok(())
}

async fn partner_command(app: &App, command: PartnerCommand) -> anyhow::Result<()> {
    use crate::storage::partners;
    match command {
        PartnerCommand::Create {
            slug,
            name,
            description,
        } => {
            let s = slug.clone();
            let created = app
                .store
                .run(move |c| partners::create(c, &s, &name, description.as_deref(), &now()))
                .await
                .map_err(field_errors)?;
            audit_cli(app, "passerelle partner create", [slug].into(), "created").await?;
            println!("partner {} created ({})", created.id, created.name);
        }
        PartnerCommand::List => {
            for p in app.store.run(partners::list).await? {
                let state = match &p.retired_at {
                    Some(at) => format!("retired {at}"),
                    None => "active".into(),
                };
                println!("{}\t{}\t{}", p.id, state, p.name);
            }
        }
        PartnerCommand::Update {
            slug,
            name,
            description,
        } => {
            if name.is_none() && description.is_none() {
                anyhow::bail!("nothing to change: give --name and/or --description");
            }
            let s = slug.clone();
            let updated = app
                .store
                .run(move |c| {
                    let description = description
                        .as_deref()
                        .map(|d| Some(d).filter(|d| !d.is_empty()));
                    partners::update(c, &s, name.as_deref(), description)
                })
                .await
                .map_err(field_errors)?;
            audit_cli(app, "passerelle partner update", [slug].into(), "updated").await?;
            println!("partner {} updated ({})", updated.id, updated.name);
        }
        PartnerCommand::Retire { slug } => {
            let s = slug.clone();
            let retired = app
                .store
                .run(move |c| partners::retire(c, &s, &now()))
                .await
                .map_err(field_errors)?;
            let outcome = format!(
                "{}; {} clients revoked",
                if retired.newly {
                    "retired"
                } else {
                    "already retired"
                },
                retired.clients_revoked
            );
            audit_cli(
                app,
                "passerelle partner retire",
                [slug.clone()].into(),
                &outcome,
            )
            .await?;
            println!("partner {slug} {outcome}");
        }
    }
    Ok(())
}

async fn keys_command(app: &App, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Rotate => {
            let kid = app.keys.rotate().await?;
            println!("signing with the new key {kid}; older keys verify until their tokens expire");
        }
        KeysCommand::List => {
            for (kid, algorithm, created, retired) in app.store.run(keys::list).await? {
                let state = match retired {
                    Some(at) => format!("retired at {at}"),
                    None => "active".into(),
                };
                println!("{kid}\t{algorithm}\tcreated at {created}\t{state}");
            }
        }
    }
    Ok(())
}

async fn sharing_command(app: &App, command: SharingCommand) -> anyhow::Result<()> {
    match command {
        SharingCommand::Grant {
            grantor,
            grantee,
            from,
            until,
        } => {
            let from = from.unwrap_or_else(sharing::today);
            let id = app
                .store
                .run(move |c| sharing::grant(c, &grantor, &grantee, &from, until.as_deref()))
                .await?;
            println!("agreement {id} recorded");
        }
        SharingCommand::End { id, on } => {
            let on = on.unwrap_or_else(sharing::today);
            let shown = id.clone();
            if !app.store.run(move |c| sharing::end(c, &id, &on)).await? {
                anyhow::bail!("no agreement {shown}");
            }
            println!("agreement {shown} ended");
        }
        SharingCommand::List => {
            for a in app.store.run(sharing::list).await? {
                println!(
                    "{}\t{} -> {}\tfrom {}\tuntil {}",
                    a.id,
                    a.grantor,
                    a.grantee,
                    a.starts_on,
                    a.ends_on.as_deref().unwrap_or("(open)")
                );
            }
        }
    }
    Ok(())
}

async fn import_file(
    app: &App,
    partner: String,
    format: Option<String>,
    file: PathBuf,
) -> anyhow::Result<()> {
    use crate::ingest::import::{self, Format};
    use indicatif::{ProgressBar, ProgressStyle};

    let format = match format.as_deref() {
        Some("ndjson") | Some("jsonl") => Format::Ndjson,
        Some("csv") => Format::Csv,
        Some(other) => anyhow::bail!("unknown format `{other}`: use ndjson or csv"),
        None => Format::from_path(&file).ok_or_else(|| {
            anyhow::anyhow!("cannot tell the format from the file name: pass --format ndjson|csv")
        })?,
    };
    let known = {
        let p = partner.clone();
        app.store
            .run(move |c| crate::storage::queries::partners_by_ids(c, &[p]))
            .await?
    };
    if known.is_empty() {
        anyhow::bail!("unknown partner `{partner}`");
    }
    let opened = std::fs::File::open(&file)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", file.display()))?;
    let size = opened.metadata().map(|m| m.len()).unwrap_or(0);
    let style = |template: &str| {
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
    };
    let reading =
        ProgressBar::new(size).with_style(style("checking {bar:40} {bytes}/{total_bytes} ({eta})"));
    let writing = ProgressBar::hidden();
    let writer = crate::domain::RowFilter {
        own: Some(partner.clone()),
        shared_by: Vec::new(),
    };
    let result = {
        let (read_bar, write_bar) = (reading.clone(), writing.clone());
        let (checked, style) = (
            reading.clone(),
            style("writing  {bar:40} {pos}/{len} rows ({eta})"),
        );
        import::import_reader(
            &app.store,
            writer,
            partner.clone(),
            format!("import:{partner}"),
            format,
            std::io::BufReader::new(opened),
            move |read| read_bar.set_position(read),
            move |n, total| {
                // The first row written: checking is over, show the writing bar instead.
                if n == 1 {
                    checked.finish_and_clear();
                    write_bar.set_length(total as u64);
                    write_bar.set_style(style.clone());
                    write_bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                }
                write_bar.set_position(n as u64);
            },
        )
        .await
    };
    reading.finish_and_clear();
    writing.finish_and_clear();
    match result {
        Ok(report) => {
            println!(
                "imported {} rows for {partner}: {} created, {} updated, {} unchanged",
                report.rows, report.created, report.updated, report.unchanged
            );
            Ok(())
        }
        Err(crate::error::Error::Invalid(errors)) => {
            for e in &errors {
                eprintln!("{}: {}: {}", file.display(), e.field, e.message);
            }
            anyhow::bail!("{} problem(s) found; nothing was imported", errors.len());
        }
        Err(other) => Err(other.into()),
    }
}

async fn export(
    app: &App,
    kind: &str,
    format: &str,
    partner: Option<String>,
) -> anyhow::Result<()> {
    use crate::export::{self, ExportFormat};
    use std::io::Write;
    use tokio_stream::StreamExt;

    let kind = kind.parse()?;
    let format = ExportFormat::parse(format)?;
    // As the partner itself would read its data (all it owns, breakdowns included), or as an
    // anonymous reader without `--partner`.
    let viewer = match partner {
        Some(p) => crate::domain::Viewer {
            partner: Some(p),
            scopes: [crate::auth::READ, crate::auth::READ_SENSITIVE]
                .map(str::to_owned)
                .into(),
            ..Default::default()
        },
        None => crate::domain::Viewer::anonymous(),
    };
    let reader = export::Reader::of(&viewer);
    let mut stream = export::stream(app.store.clone(), reader, kind, format);
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk?)?;
    }
    out.flush()?;
    Ok(())
}

fn describe(report: &seed::LoadReport) -> String {
    report
        .iter()
        .map(|(kind, effects)| {
            let parts: Vec<String> = effects
                .iter()
                .map(|(e, n)| format!("{n} {}", format!("{e:?}").to_lowercase()))
                .collect();
            format!("{kind} ({})", parts.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}
