//! A child for the control tests: `idle_clients SOCKET COUNT` opens COUNT connections to a
//! daemon's control socket and never sends a byte. It prints `connected COUNT` once all are
//! open, then waits for the daemon to close each one and prints `closed N` (N of them closed
//! by the daemon; the others failed otherwise). It runs apart from the test so that the test's
//! own descriptors are not spent.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let (Some(socket), Some(count)) = (
        arguments.first(),
        arguments
            .get(1)
            .and_then(|count| count.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: idle_clients SOCKET COUNT");
        return ExitCode::from(2);
    };
    let mut streams = Vec::with_capacity(count);
    for index in 0..count {
        match UnixStream::connect(socket) {
            Ok(stream) => streams.push(stream),
            Err(error) => {
                eprintln!("idle_clients: connection {index}: {error}");
                return ExitCode::from(1);
            }
        }
    }
    println!("connected {count}");
    let _ = std::io::stdout().flush();
    let mut closed = 0usize;
    for mut stream in streams {
        let mut byte = [0u8; 1];
        // The daemon sends nothing to a connection that asked nothing: the read ends when the
        // daemon closes it.
        match stream.read(&mut byte) {
            Ok(0) => closed += 1,
            Ok(_) => eprintln!("idle_clients: the daemon sent something unasked"),
            Err(error) => eprintln!("idle_clients: {error}"),
        }
    }
    println!("closed {closed}");
    ExitCode::SUCCESS
}
