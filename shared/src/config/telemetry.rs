//! How a function logs, and where its metrics and traces go: read on their own, before the
//! rest of the settings, so that everything after (invalid settings included) is reported.

/// Crates whose TRACE output carries what a request or a dependency sent: `lambda_runtime`
/// logs each raw event (its headers, the bearer token among them), the AWS SDK and the HTTP
/// stack their exchanges. Whatever `RUST_LOG` says, they log at DEBUG at most.
const NEVER_TRACED: [&str; 7] = [
    "lambda_runtime",
    "lambda_http",
    "aws_smithy_runtime",
    "aws_smithy_http_client",
    "aws_sigv4",
    "hyper",
    "hyper_util",
];

/// How to log, from Lambda's advanced logging controls. Read on its own, first thing, so that
/// everything after it (invalid settings included) is logged in the function's format.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// `AWS_LAMBDA_LOG_FORMAT=JSON`: one JSON object per line.
    pub json: bool,
    /// `AWS_LAMBDA_LOG_LEVEL` (a level), else `RUST_LOG` (a level and `target=level`
    /// directives, e.g. `info,shared=debug`; no span or field filters), else `info`. A value
    /// that does not parse means `info`.
    pub filter: tracing_subscriber::filter::Targets,
}

impl LogSettings {
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let info = || {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing::level_filters::LevelFilter::INFO)
        };
        let mut filter: tracing_subscriber::filter::Targets = lookup("AWS_LAMBDA_LOG_LEVEL")
            .or_else(|| lookup("RUST_LOG"))
            .and_then(|directives| directives.trim().parse().ok())
            .unwrap_or_else(info);
        for target in NEVER_TRACED {
            if filter.would_enable(target, &tracing::Level::TRACE) {
                filter = filter.with_target(target, tracing::level_filters::LevelFilter::DEBUG);
            }
        }
        Self {
            json: lookup("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json")),
            filter,
        }
    }
}

/// Where the CloudWatch metrics go: `METRICS_NAMESPACE` (default `UsersApi`), the `service`
/// dimension, `METRICS_SERVICE` (default `users-api`; the template gives the stack's name), and
/// the `version` dimension, the function's version (`AWS_LAMBDA_FUNCTION_VERSION`), so that a
/// canary's alarms can watch the new version alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    pub namespace: String,
    pub service: String,
    pub version: String,
    /// The environment runs one invocation at a time (no `AWS_LAMBDA_MAX_CONCURRENCY` above 1),
    /// so each metrics document holds one invocation's and may carry its request id.
    pub one_invocation_at_a_time: bool,
}

impl MetricsSettings {
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let named = |name, default: &str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        Self {
            namespace: named("METRICS_NAMESPACE", "UsersApi"),
            service: named("METRICS_SERVICE", "users-api"),
            version: named("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            one_invocation_at_a_time: lookup("AWS_LAMBDA_MAX_CONCURRENCY")
                .and_then(|value| value.trim().parse::<u32>().ok())
                .is_none_or(|concurrency| concurrency <= 1),
        }
    }
}

/// Where traces go: an OTLP/HTTP endpoint (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or
/// `OTEL_EXPORTER_OTLP_ENDPOINT` plus `/v1/traces`), none by default; and the traces'
/// `service.name` (`OTEL_SERVICE_NAME`, else the function's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracesSettings {
    pub endpoint: Option<String>,
    pub service: String,
}

impl TracesSettings {
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let set = |name| lookup(name).filter(|value: &String| !value.trim().is_empty());
        let endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| {
            set("OTEL_EXPORTER_OTLP_ENDPOINT")
                .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
        });
        let service = set("OTEL_SERVICE_NAME")
            .or_else(|| set("AWS_LAMBDA_FUNCTION_NAME"))
            .unwrap_or_else(|| "users-api".to_owned());
        Self { endpoint, service }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_level_and_format_follow_lambdas_controls_then_rust_log() {
        let log = |vars: &[(&str, &str)]| {
            LogSettings::from_lookup(|name| {
                vars.iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            })
        };

        let enabled = |settings: &LogSettings, target: &str, level| {
            settings.filter.would_enable(target, &level)
        };

        assert!(enabled(&log(&[]), "shared", tracing::Level::INFO));
        assert!(!enabled(&log(&[]), "shared", tracing::Level::DEBUG));
        assert!(!log(&[]).json);
        let directives = log(&[("RUST_LOG", "info,shared=debug,sqlx=warn")]);
        assert!(enabled(&directives, "shared::db", tracing::Level::DEBUG));
        assert!(!enabled(&directives, "sqlx::query", tracing::Level::INFO));
        assert!(enabled(&directives, "lambda_runtime", tracing::Level::INFO));
        let lambda = log(&[
            ("AWS_LAMBDA_LOG_LEVEL", "WARN"),
            ("RUST_LOG", "debug"),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ]);
        assert!(lambda.json);
        assert!(!enabled(&lambda, "shared", tracing::Level::INFO));
        assert!(enabled(&lambda, "shared", tracing::Level::WARN));
    }

    #[test]
    fn no_log_level_lets_the_runtime_print_the_events_it_receives() {
        let log = |directives: &str| {
            LogSettings::from_lookup(|name| (name == "RUST_LOG").then(|| directives.to_owned()))
        };

        for directives in ["trace", "lambda_runtime=trace", "info,lambda_runtime=trace"] {
            let settings = log(directives);
            for target in NEVER_TRACED {
                let traced = settings.filter.would_enable(target, &tracing::Level::TRACE);
                assert!(!traced, "{directives}: {target}");
            }
        }
        let everything = log("trace");
        assert!(everything
            .filter
            .would_enable("lambda_runtime", &tracing::Level::DEBUG));
        assert!(everything
            .filter
            .would_enable("shared", &tracing::Level::TRACE));
    }

    #[test]
    fn metrics_documents_carry_an_invocations_ids_only_when_it_runs_alone() {
        let with = |value: Option<&str>| {
            MetricsSettings::from_lookup(|name| {
                (name == "AWS_LAMBDA_MAX_CONCURRENCY")
                    .then(|| value.map(str::to_owned))
                    .flatten()
            })
            .one_invocation_at_a_time
        };

        assert!(with(None));
        assert!(with(Some("1")));
        assert!(!with(Some("8")));
    }
}
