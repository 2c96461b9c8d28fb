//! The command line parsed lazily (`defer` on the subcommand enums) is the same for users as the
//! one clap builds eagerly: same subcommands, arguments, help and errors.
//!
//! With `defer`, a subcommand's name and its variant's attributes (the about shown in `distill
//! --help`) are set up front and its arguments are added when it is parsed. Built eagerly, clap
//! applies the variant's attributes *after* the arguments; deferred, after them come whatever
//! the arguments' `Args` struct sets (a doc comment on it becomes the about). So the lazy tree
//! equals the eager one if building a subcommand changes none of the attributes that were set
//! before, and if parsing shows the help of the fully built tree: the two checks below, for every
//! subcommand.

use clap::error::ErrorKind;
use clap::CommandFactory;

use crate::{parse, Cli, Command};

/// Every subcommand path (`["run"]`, `["key", "generate"]`), parents before children, without
/// clap's own `help` subcommand.
fn paths(command: &clap::Command) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let name = sub.get_name().to_string();
        out.push(vec![name.clone()]);
        for mut rest in paths(sub) {
            rest.insert(0, name.clone());
            out.push(rest);
        }
    }
    out
}

fn find<'a>(command: &'a clap::Command, path: &[String]) -> &'a clap::Command {
    path.iter().fold(command, |c, name| {
        c.find_subcommand(name)
            .unwrap_or_else(|| panic!("no subcommand {path:?}"))
    })
}

/// What a subcommand's parent shows of it, and anything else set on it apart from arguments.
fn attributes(c: &clap::Command) -> String {
    let subcommands: Vec<&str> = c
        .get_subcommands()
        .map(|s| s.get_name())
        .filter(|n| *n != "help")
        .collect();
    format!(
        "{:#?}",
        (
            c.get_name(),
            c.get_about(),
            c.get_long_about(),
            (c.get_before_help(), c.get_before_long_help()),
            (c.get_after_help(), c.get_after_long_help()),
            (c.get_version(), c.get_long_version()),
            c.is_hide_set(),
            c.get_all_aliases().collect::<Vec<_>>(),
            (c.get_short_flag(), c.get_long_flag()),
            c.get_next_help_heading(),
            (
                c.is_subcommand_required_set(),
                c.is_arg_required_else_help_set()
            ),
            subcommands,
        )
    )
}

fn rendered_help(args: &[&str]) -> (ErrorKind, String) {
    let mut argv = vec!["distill"];
    argv.extend_from_slice(args);
    match parse(argv.iter().copied()) {
        Ok(_) => panic!("{argv:?} parsed instead of showing help"),
        Err(e) => (e.kind(), e.render().to_string()),
    }
}

fn all_paths() -> Vec<Vec<String>> {
    let mut built = Cli::command();
    built.build();
    let list = paths(&built);
    assert!(list.len() > 30, "too few subcommands found: {list:?}");
    list
}

#[test]
fn subcommand_arguments_are_built_only_when_needed() {
    let lazy = Cli::command();
    let top: Vec<&str> = lazy.get_arguments().map(|a| a.get_id().as_str()).collect();
    assert_eq!(top, ["root", "json", "state"]);
    for path in paths(&lazy) {
        let sub = find(&lazy, &path);
        let args: Vec<&str> = sub.get_arguments().map(|a| a.get_id().as_str()).collect();
        assert!(
            args.is_empty(),
            "`distill {}` has arguments before it is invoked: {args:?}",
            path.join(" ")
        );
    }
}

#[test]
fn building_a_subcommand_changes_nothing_its_parent_shows() {
    let lazy = Cli::command();
    let mut built = Cli::command();
    built.build();
    assert_eq!(paths(&lazy), paths(&built));
    for path in paths(&lazy) {
        let sub = find(&built, &path);
        assert!(
            sub.get_arguments().any(|a| a.get_id() == "help"),
            "`distill {}` was not built",
            path.join(" ")
        );
        assert_eq!(
            attributes(find(&lazy, &path)),
            attributes(sub),
            "building `distill {}` changed its attributes: does its Args struct have a doc \
             comment or #[command] attribute? It overrides the variant's once deferred",
            path.join(" ")
        );
    }
}

/// What `--help` shows of a built command: clap uses the long layout only if some long help
/// exists, and then gives its own `--help` argument a long help of its own.
fn long_help(c: &clap::Command) -> String {
    let mut c = c.clone();
    let long = c
        .get_arguments()
        .any(|a| a.get_id() == "help" && a.get_long_help().is_some());
    if long {
        c.render_long_help().to_string()
    } else {
        c.render_help().to_string()
    }
}

#[test]
fn help_through_parsing_is_the_fully_built_help() {
    let mut built = Cli::command();
    built.build();
    assert_eq!(
        rendered_help(&["--help"]),
        (ErrorKind::DisplayHelp, long_help(&built)),
        "distill --help"
    );
    assert_eq!(
        rendered_help(&["-h"]),
        (
            ErrorKind::DisplayHelp,
            built.clone().render_help().to_string()
        ),
        "distill -h"
    );
    for path in all_paths() {
        let sub = find(&built, &path);
        let words: Vec<&str> = path.iter().map(String::as_str).collect();
        let name = path.join(" ");
        let mut long = words.clone();
        long.push("--help");
        assert_eq!(
            rendered_help(&long),
            (ErrorKind::DisplayHelp, long_help(sub)),
            "distill {name} --help"
        );
        let mut short = words.clone();
        short.push("-h");
        assert_eq!(
            rendered_help(&short),
            (
                ErrorKind::DisplayHelp,
                sub.clone().render_help().to_string()
            ),
            "distill {name} -h"
        );
        let mut help = vec!["help"];
        help.extend(&words);
        assert_eq!(
            rendered_help(&help),
            (ErrorKind::DisplayHelp, long_help(sub)),
            "distill help {name}"
        );
    }
}

#[test]
fn parses_into_the_derived_types() {
    let cli = parse([
        "distill", "run", "--rm", "--memory", "1g", "--state", "/s", "img", "sh", "-c", "--x",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    // A global argument after the subcommand.
    assert_eq!(cli.state, std::path::Path::new("/s"));
    assert!(!cli.json);
    let Command::Run(args) = cli.command else {
        panic!("not parsed as run");
    };
    let args = format!("{args:?}");
    for field in [
        "rm: true",
        "memory: Some(\"1g\")",
        "stop_timeout: 10",
        "image: \"img\"",
        "cmd: [\"sh\", \"-c\", \"--x\"]",
    ] {
        assert!(args.contains(field), "{field} not in {args}");
    }

    let cli = parse(["distill", "--json", "kill", "-s", "TERM", "a", "b"]).unwrap();
    assert!(cli.json);
    assert!(matches!(
        cli.command,
        Command::Kill { signal, names } if signal == "TERM" && names == ["a", "b"]
    ));
    let cli = parse(["distill", "store", "gc", "--keep", "x"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Store(crate::store_cmd::StoreCommand::Gc { keep }) if keep == ["x"]
    ));
}

#[test]
fn usage_errors_and_version_exit_as_before() {
    for (args, kind, code) in [
        (&["run"][..], ErrorKind::MissingRequiredArgument, 2),
        (&["run", "--rmm", "x"], ErrorKind::UnknownArgument, 2),
        (&["stop", "-t", "soon", "x"], ErrorKind::ValueValidation, 2),
        (&["rnu"], ErrorKind::InvalidSubcommand, 2),
        (
            &["store"],
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand,
            2,
        ),
        (&["--version"], ErrorKind::DisplayVersion, 0),
    ] {
        let mut argv = vec!["distill"];
        argv.extend_from_slice(args);
        let Err(e) = parse(argv.iter().copied()) else {
            panic!("{argv:?} parsed");
        };
        assert_eq!((e.kind(), e.exit_code()), (kind, code), "{argv:?}: {e}");
    }
    let Err(e) = parse(["distill", "-V"]) else {
        panic!("-V parsed");
    };
    assert_eq!(
        e.render().to_string(),
        format!("distill {}\n", env!("CARGO_PKG_VERSION"))
    );
}
