//! `maestro`: the command-line client of a Maestro server.

fn main() {
    println!("maestro client: see `maestro --help` once its subcommands land");
}
