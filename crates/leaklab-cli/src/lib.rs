//! The command line every chapter program shares.
//!
//! `just run chN-name` runs both versions of a chapter's scenario side by
//! side; `just run chN-name bad` or `… good` runs one. `-h`/`--help` prints the
//! usage; anything else prints it to stderr and exits with code 2.
//!
//! ```
//! use leaklab_cli::{Parsed, Sides};
//!
//! assert_eq!(Sides::parse(&[] as &[&str]), Parsed::Run(Sides::BOTH));
//! assert_eq!(Sides::parse(&["bad"]), Parsed::Run(Sides { bad: true, good: false }));
//! assert_eq!(Sides::parse(&["--help"]), Parsed::Help);
//! assert_eq!(Sides::parse(&["ugly"]), Parsed::Unknown("ugly".to_string()));
//! ```
//!
//! In a chapter's `main`:
//!
//! ```no_run
//! use std::process::ExitCode;
//!
//! const USAGE: &str = "usage: ch1-tasks [bad|good]   (no argument: both, side by side)";
//!
//! fn main() -> ExitCode {
//!     let sides = match leaklab_cli::Sides::from_args(USAGE) {
//!         Ok(sides) => sides,
//!         Err(exit) => return exit,
//!     };
//!     if sides.bad { /* run the leaking version */ }
//!     if sides.good { /* run the fixed version */ }
//!     ExitCode::SUCCESS
//! }
//! ```

use std::process::ExitCode;

/// Which versions of the scenario to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sides {
    /// Run the leaking version.
    pub bad: bool,
    /// Run the fixed version.
    pub good: bool,
}

/// What a command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Run these sides.
    Run(Sides),
    /// Print the usage and stop.
    Help,
    /// Arguments the program does not know, joined by spaces.
    Unknown(String),
}

impl Sides {
    /// Both versions, side by side: what no argument means.
    pub const BOTH: Sides = Sides {
        bad: true,
        good: true,
    };

    /// Parses the arguments after the program name.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Parsed {
        let words: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        match words[..] {
            [] => Parsed::Run(Sides::BOTH),
            ["bad"] => Parsed::Run(Sides {
                bad: true,
                good: false,
            }),
            ["good"] => Parsed::Run(Sides {
                bad: false,
                good: true,
            }),
            ["-h" | "--help"] => Parsed::Help,
            _ => Parsed::Unknown(words.join(" ")),
        }
    }

    /// Parses this process's arguments. On `--help` prints `usage` and
    /// returns `Err(ExitCode::SUCCESS)`; on anything unknown prints it to
    /// stderr and returns `Err(ExitCode::from(2))`, for `main` to return.
    pub fn from_args(usage: &str) -> Result<Sides, ExitCode> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match Sides::parse(&args) {
            Parsed::Run(sides) => Ok(sides),
            Parsed::Help => {
                println!("{usage}");
                Err(ExitCode::SUCCESS)
            }
            Parsed::Unknown(words) => {
                eprintln!("unknown arguments: {words}\n{usage}");
                Err(ExitCode::from(2))
            }
        }
    }

    /// Column headers for the chosen sides: each of `measures` once per side,
    /// prefixed `bad: ` or `good: `, after the `leading` columns.
    pub fn header(&self, leading: &[&str], measures: &[&str]) -> Vec<String> {
        let mut header: Vec<String> = leading.iter().map(|column| column.to_string()).collect();
        for (shown, side) in [(self.bad, "bad"), (self.good, "good")] {
            if shown {
                header.extend(measures.iter().map(|measure| format!("{side}: {measure}")));
            }
        }
        header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_words_are_unknown_even_if_each_is_known() {
        assert_eq!(
            Sides::parse(&["bad", "good"]),
            Parsed::Unknown("bad good".into())
        );
    }

    #[test]
    fn header_repeats_measures_per_side() {
        let good_only = Sides {
            bad: false,
            good: true,
        };
        assert_eq!(
            good_only.header(&["scenario"], &["tasks", "heap"]),
            ["scenario", "good: tasks", "good: heap"]
        );
        assert_eq!(
            Sides::BOTH.header(&[], &["kept"]),
            ["bad: kept", "good: kept"]
        );
    }
}
