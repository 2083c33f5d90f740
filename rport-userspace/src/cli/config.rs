//! `rport run --config PATH`: the flags of `rport run` in a TOML file.
//!
//! Generic over clap's definition of [`RunArgs`]: a key is a flag's long name
//! (`sip-port`; `sip_port` is accepted too), its value becomes that flag's argv
//! (`--sip-port=5060 --sip-port=5080`), so every present and future flag is a key and clap
//! validates the file's values exactly as it validates the command line's. A flag given on
//! the command line replaces the file's value for that key (clap's `value_source`).
//! Errors name the file, the line and the key.
use std::{
    collections::BTreeMap,
    ffi::OsString,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use clap::{ArgAction, ArgMatches, Args, Command, parser::ValueSource};
use toml::{Spanned, Value};

use crate::cli::run::RunArgs;

/// Read when no `--config` is given, if it exists.
pub const DEFAULT_PATH: &str = "/etc/rport/rport.toml";

/// Flags about the file itself (or clap's own): never keys in it.
pub const NOT_KEYS: &[&str] = &["config", "check-config", "help"];

/// `rport run`'s arguments with nothing required: the command line alone may leave the
/// required ones to the file, and one key is validated on its own.
fn lenient() -> Command {
    RunArgs::augment_args(Command::new("run").no_binary_name(true)).mut_args(|a| a.required(false))
}

/// The keys a file may hold: the long names of `rport run`'s flags.
pub fn keys() -> Vec<String> {
    lenient()
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| !NOT_KEYS.contains(l))
        .map(str::to_string)
        .collect()
}

/// The argv of `rport run` (what follows `run`) with the config file's keys in front:
/// `--config PATH`'s file, else `default` if it exists, else `args` as they are. Keys whose
/// flag is on the command line are left out (the command line wins). A command line clap
/// rejects is returned as it is, for clap to report.
pub fn expand(args: &[OsString], default: &Path) -> Result<Vec<OsString>> {
    let cmd = lenient();
    let Ok(m) = cmd.clone().try_get_matches_from(args) else {
        return Ok(args.to_vec());
    };
    let (path, implicit) = match m.get_one::<PathBuf>("config") {
        Some(p) => (p.clone(), false),
        None if default.exists() => (default.to_path_buf(), true),
        None => return Ok(args.to_vec()),
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    let mut out = file_argv(&text, &path, &cmd, &m)?;
    if implicit {
        // So that `rport run` (and --check-config) knows which file it runs with.
        out.push(format!("--config={}", path.display()).into());
    }
    out.extend(args.iter().cloned());
    Ok(out)
}

/// 1-based line of byte `at` of `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// clap's error as one line, without its usage block (also `main`'s one-line errors).
pub fn clap_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let what: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let what = what.join(" ");
    what.strip_prefix("error: ").unwrap_or(&what).to_string()
}

/// One TOML scalar as a flag's value.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        Value::Datetime(_) | Value::Array(_) | Value::Table(_) => None,
    }
}

/// The argv the file's keys stand for, each key checked by clap on its own; keys given in
/// `given` (the command line's matches) are left out.
fn file_argv(text: &str, path: &Path, cmd: &Command, given: &ArgMatches) -> Result<Vec<OsString>> {
    let at = |span: std::ops::Range<usize>| {
        format!("{} line {}", path.display(), line_of(text, span.start))
    };
    let table: BTreeMap<Spanned<String>, Spanned<Value>> = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(&at)
            .unwrap_or_else(|| path.display().to_string());
        anyhow::anyhow!("{line}: {}", e.message().trim())
    })?;
    let mut entries: Vec<_> = table.into_iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (key, value) in entries {
        let where_ = at(key.span());
        let name = key.get_ref().replace('_', "-");
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(name.as_str()) && !NOT_KEYS.contains(&name.as_str()))
        else {
            bail!(
                "{where_}: unknown key `{}` (the keys are the long flags of `rport run`: {})",
                key.get_ref(),
                keys().join(", ")
            );
        };
        if let Some(first) = seen.insert(name.clone(), line_of(text, key.span().start)) {
            bail!(
                "{where_}: key `{}` given twice (first on line {first})",
                key.get_ref()
            );
        }
        if given.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            continue;
        }
        let where_ = at(value.span());
        let flag = format!("--{name}");
        let tokens: Vec<String> = match (arg.get_action(), value.get_ref()) {
            (ArgAction::SetTrue, Value::Boolean(true)) => vec![flag],
            (ArgAction::SetTrue, Value::Boolean(false)) => vec![],
            (ArgAction::SetTrue, _) => {
                bail!("{where_}: key `{}`: expected true or false", key.get_ref())
            }
            (_, Value::Array(items)) => items
                .iter()
                .map(|v| scalar(v).map(|s| format!("{flag}={s}")))
                .collect::<Option<_>>()
                .with_context(|| {
                    format!(
                        "{where_}: key `{}`: a list of strings or numbers expected",
                        key.get_ref()
                    )
                })?,
            (_, v) => vec![format!(
                "{flag}={}",
                scalar(v).with_context(|| format!(
                    "{where_}: key `{}`: a string, number, boolean or list expected",
                    key.get_ref()
                ))?
            )],
        };
        if let Err(e) = cmd.clone().try_get_matches_from(&tokens) {
            bail!("{where_}: key `{}`: {}", key.get_ref(), clap_line(&e));
        }
        out.extend(tokens.into_iter().map(OsString::from));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Top {
        #[command(flatten)]
        run: RunArgs,
    }

    fn tmp(name: &str, text: &str) -> PathBuf {
        let p =
            std::env::temp_dir().join(format!("rport-config-{}-{name}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `expand` then clap's real parse, as main.rs does.
    fn parse(args: &[&str], default: &Path) -> Result<RunArgs> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let argv = expand(&args, default)?;
        let mut full = vec![OsString::from("run")];
        full.extend(argv);
        Ok(Top::try_parse_from(full)
            .map_err(|e| anyhow::anyhow!("{}", clap_line(&e)))?
            .run)
    }

    fn err(args: &[&str], text: &str) -> String {
        let p = tmp("err", text);
        let mut a = vec!["--config", p.to_str().unwrap()];
        a.extend_from_slice(args);
        let e = format!("{:#}", parse(&a, Path::new("/nonexistent")).unwrap_err());
        std::fs::remove_file(&p).ok();
        e
    }

    #[test]
    fn unknown_key_names_the_key_and_its_line() {
        let e = err(&[], "outside = [\"a\"]\n\n# comment\nsip-prot = 5060\n");
        assert!(e.contains("line 4: unknown key `sip-prot`"), "{e}");
        assert!(e.contains("sip-port"), "the known keys are listed: {e}");
        // The file's own flags are not keys.
        let e = err(&[], "config = \"/x\"\n");
        assert!(e.contains("line 1: unknown key `config`"), "{e}");
    }

    #[test]
    fn bad_value_names_the_key_and_its_line_with_clap_s_reason() {
        let e = err(
            &[],
            "outside = [\"a\"]\ninside = [\"b\"]\nsip-port = [5060,\n  70000]\n",
        );
        assert!(
            e.contains("line 3: key `sip-port`: invalid value '70000' for '--sip-port <N>'"),
            "{e}"
        );
        let e = err(&[], "xdp-mode = \"bogus\"\n");
        assert!(
            e.contains("line 1: key `xdp-mode`")
                && e.contains("[possible values: auto, native, skb]"),
            "{e}"
        );
        // A value parser of run.rs's own runs too.
        let e = err(&[], "\nmax-bindings = 0\n");
        assert!(
            e.contains("line 2: key `max-bindings`") && e.contains("--max-bindings must be 1..="),
            "{e}"
        );
        // One value for a one-value flag.
        let e = err(&[], "xdp-mode = [\"skb\", \"native\"]\n");
        assert!(
            e.contains("line 1: key `xdp-mode`") && e.contains("cannot be used multiple times"),
            "{e}"
        );
        let e = err(&[], "pin-path = { a = 1 }\n");
        assert!(e.contains("line 1: key `pin-path`: a string"), "{e}");
        let e = err(&[], "outside = [\"a\"]\nsip-port = \n");
        assert!(
            e.contains("line 2:"),
            "a TOML syntax error has its line: {e}"
        );
        let e = err(&[], "sip-port = 1\nsip_port = 2\n");
        assert!(
            e.contains("line 2: key `sip_port` given twice (first on line 1)"),
            "{e}"
        );
    }

    #[test]
    fn file_fills_flags_and_the_command_line_overrides_it() {
        let p = tmp(
            "ok",
            "outside = [\"o1\", \"o2\"]\ninside = [\"i1\"]\nsip_port = [5060, 5080]\nxdp-mode = \"skb\"\nmax-bindings = 1000\n",
        );
        let ps = p.to_str().unwrap();
        let r = parse(&["--config", ps], Path::new("/nonexistent")).unwrap();
        assert_eq!(r.outside, ["o1", "o2"]);
        assert_eq!(r.inside, ["i1"]);
        assert_eq!(r.sip_ports, [5060, 5080]);
        assert!(matches!(r.xdp_mode, crate::cli::run::Mode::Skb));
        assert_eq!(r.max_bindings, 1000);
        // The command line's --outside and --sip-port replace the file's (not added to them).
        let r = parse(
            &[
                "--outside",
                "x",
                "--config",
                ps,
                "--sip-port",
                "7000",
                "--xdp-mode",
                "native",
            ],
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(r.outside, ["x"]);
        assert_eq!(r.inside, ["i1"]);
        assert_eq!(r.sip_ports, [7000]);
        assert!(matches!(r.xdp_mode, crate::cli::run::Mode::Native));
        assert_eq!(r.max_bindings, 1000);
        // The default file is read when it exists and no --config is given, and is named.
        let r = parse(&["--inside", "y"], &p).unwrap();
        assert_eq!(
            (r.outside.as_slice(), r.inside.as_slice()),
            (&["o1".to_string(), "o2".into()][..], &["y".to_string()][..])
        );
        assert_eq!(r.config.as_deref(), Some(p.as_path()));
        std::fs::remove_file(&p).ok();
        // No default file: the command line alone, as before.
        let r = parse(
            &["--outside", "a", "--inside", "b"],
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(r.sip_ports, [rport_common::SIP_PORT]);
        assert!(r.config.is_none());
        // An explicit --config that is missing is an error.
        let e = format!(
            "{:#}",
            parse(&["--config", "/nonexistent/rport.toml"], &p).unwrap_err()
        );
        assert!(
            e.contains("reading the config file /nonexistent/rport.toml"),
            "{e}"
        );
    }

    #[test]
    fn boolean_flags_and_empty_lists() {
        // A list may be empty: the flag is then not given.
        let p = tmp(
            "empty",
            "outside = [\"a\"]\ninside = [\"b\"]\nforce-rport = []\n",
        );
        let r = parse(
            &["--config", p.to_str().unwrap()],
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert!(r.force_rport.is_empty());
        std::fs::remove_file(&p).ok();
        // A flag without a value (none in `run` today): true gives it, false leaves it out.
        let cmd = Command::new("t").no_binary_name(true).arg(
            clap::Arg::new("dry")
                .long("dry-run")
                .action(ArgAction::SetTrue),
        );
        let m = cmd
            .clone()
            .try_get_matches_from(Vec::<OsString>::new())
            .unwrap();
        let argv = |t: &str| file_argv(t, Path::new("f"), &cmd, &m).map_err(|e| e.to_string());
        assert_eq!(argv("dry-run = true").unwrap(), ["--dry-run"]);
        assert!(argv("dry_run = false").unwrap().is_empty());
        assert_eq!(
            argv("dry-run = 1").unwrap_err(),
            "f line 1: key `dry-run`: expected true or false"
        );
    }

    /// packaging/rport.toml parses, and names every flag of `rport run` (a new flag fails
    /// here until it is documented there).
    #[test]
    fn packaged_example_has_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/rport.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let cmd = lenient();
        let m = cmd
            .clone()
            .try_get_matches_from(Vec::<OsString>::new())
            .unwrap();
        file_argv(&text, &path, &cmd, &m).unwrap();
        // Every key appears, set or commented out, at the start of a line.
        let missing: Vec<String> = keys()
            .into_iter()
            .filter(|k| {
                !text.lines().any(|l| {
                    let l = l.trim_start_matches(['#', ' ']);
                    l.strip_prefix(k.as_str())
                        .is_some_and(|r| r.trim_start().starts_with('='))
                })
            })
            .collect();
        assert!(
            missing.is_empty(),
            "packaging/rport.toml lacks the keys {missing:?}"
        );
    }
}
