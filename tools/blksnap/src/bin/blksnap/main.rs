// SPDX-License-Identifier: GPL-2.0
//! blksnap: the command-line front end to the blksnap module.  See blksnap(8).

mod cli;
mod commands;
mod events;
mod output;
mod stretch;

use clap::Parser;

fn main() {
    // Usage errors exit 2 (clap); failed commands exit 1.
    let cli = cli::Cli::parse();
    let out = output::Printer { json: cli.json };
    if let Err(e) = commands::run(&cli.command, &out) {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
