//! `edge-agent`: the site daemon (`run`) and the counter commands that talk to it; the command
//! line is [`edge_agent::cli`].

fn main() -> std::process::ExitCode {
    edge_agent::cli::main()
}
