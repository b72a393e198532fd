//! The `passerelle` command: `serve`, `migrate`, `seed`, `schema`, and the administration of
//! OAuth2 clients, signing keys and data-sharing agreements.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::{now, App};
use crate::auth::{clients, keys, sharing};
use crate::config::{Config, LogFormat};
use crate::domain::seed;

#[derive(Parser)]
#[command(
    name = "passerelle",
    version,
    about = "GraphQL hub for social-action partners' data"
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
        /// Load the demo data (the partners' source documents) before serving.
        #[arg(long)]
        demo: bool,
    },
    /// Apply pending database migrations.
    Migrate,
    /// Load the demo data: the facts of the partners' source documents. Idempotent.
    Seed,
    /// Print the GraphQL schema (SDL).
    Schema,
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
enum ClientCommand {
    /// Register a client; prints its id and secret (the secret is shown only this once).
    Create {
        /// The partner the client acts for, e.g. `caravan`.
        #[arg(long)]
        partner: String,
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
    /// End an agreement on a day (default: today).
    End {
        id: String,
        #[arg(long)]
        on: Option<String>,
    },
    /// List agreements.
    List,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Schema = cli.command {
        print!("{}", crate::graphql::sdl());
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("passerelle: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("passerelle: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("passerelle: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    let database = config.database_url.to_string();
    let app = App::start(config)
        .await
        .map_err(|e| anyhow::anyhow!("{} ({database})", e.message()))?;
    match command {
        Command::Migrate => {
            println!("migrations applied on {database}");
        }
        Command::Seed => {
            let report = seed::load_demo(&app.store, now()).await?;
            println!("demo data loaded into {database}: {}", describe(&report));
        }
        Command::Serve { demo } => {
            if demo {
                let report = seed::load_demo(&app.store, now()).await?;
                tracing::info!(report = %describe(&report), "demo data loaded");
            }
            let listener = tokio::net::TcpListener::bind(app.config.listen).await?;
            let addr = listener.local_addr()?;
            println!("Passerelle is serving {database}");
            println!("  GraphQL:  http://{addr}/graphql");
            println!("  GraphiQL: http://{addr}/graphiql");
            crate::http::serve(app, listener, crate::http::shutdown_signal()).await?;
            println!("Passerelle stopped.");
        }
        Command::Schema => {}
        Command::Client(c) => client_command(&app, c).await?,
        Command::Keys(c) => keys_command(&app, c).await?,
        Command::Sharing(c) => sharing_command(&app, c).await?,
    }
    Ok(())
}

async fn client_command(app: &App, command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Create { partner, scopes } => {
            let created = app
                .store
                .run(move |c| clients::create(c, &partner, &scopes))
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

async fn keys_command(app: &App, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Rotate => {
            let kid = app.store.run(keys::rotate).await?;
            println!("signing with the new key {kid}; older keys verify until their tokens expire");
        }
        KeysCommand::List => {
            for (kid, created, retired) in app.store.run(keys::list).await? {
                let state = match retired {
                    Some(at) => format!("retired at {at}"),
                    None => "active".into(),
                };
                println!("{kid}\tcreated at {created}\t{state}");
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
