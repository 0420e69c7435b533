//! Checks a plugin configuration with the filter's own parser, before it is deployed:
//! `kpw-check-config config.json` (or `-` for standard input). Exit 0 and a summary when
//! it is valid; exit 1 and the key and problem when it is not, as the filter would log it.

use keystone_prom_wasm::config::Config;
use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: kpw-check-config FILE|-");
        return ExitCode::from(2);
    };
    let mut bytes = Vec::new();
    let read = if path == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::read(&path).map(|b| bytes = b)
    };
    if let Err(e) = read {
        eprintln!("{path}: {e}");
        return ExitCode::from(2);
    }
    match Config::from_json(&bytes) {
        Ok(c) => {
            println!(
                "valid: keystone {} via {}, label {}, cache {} s × {} slots",
                c.keystone.url,
                c.keystone.upstream,
                c.project_label,
                c.cache.ttl_seconds,
                c.cache.max_entries
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("invalid configuration: {e}");
            ExitCode::from(1)
        }
    }
}
