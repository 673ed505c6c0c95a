//! Shared by the `chrysalis ton` end-to-end tests (`ton_cli`, `ton_pay`):
//! the contracts' directory, the skip-or-require rule for the TON suite, and
//! the loopback TON HTTP API backed by @ton/sandbox.
//!
//! Each test file compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{json, Value};

/// `host-tools/ton/contract`: the contracts, their build and the harness.
pub fn contract_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ton/contract")
}

/// True when node, the npm packages and the compiled contracts are there.
/// Otherwise the test is skipped with a message, or fails when
/// CHRYSALIS_REQUIRE_TON=1 (CI).
pub fn ton_available(test: &str) -> bool {
    let dir = contract_dir();
    let node_ok = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let missing = if !node_ok {
        Some("node is not installed")
    } else if !dir.join("node_modules/@ton/sandbox").is_dir() {
        Some("npm packages missing (run: bash ci/ton.sh)")
    } else if !dir.join("build/registry.json").is_file()
        || !dir.join("build/channel.json").is_file()
    {
        Some("contracts not compiled (run: bash ci/ton.sh)")
    } else {
        None
    };
    match missing {
        None => true,
        Some(why) => {
            if std::env::var("CHRYSALIS_REQUIRE_TON").as_deref() == Ok("1") {
                panic!("{test}: CHRYSALIS_REQUIRE_TON=1 but {why}");
            }
            eprintln!("SKIPPED {test}: {why}");
            false
        }
    }
}

/// `node api-server.js`: HTTP on loopback plus JSON-line control on stdin.
/// Killed when dropped.
pub struct Api {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The API's base URL (`http://127.0.0.1:PORT/api`).
    pub url: String,
}

impl Api {
    /// Starts the server and initialises the chain (the chain's clock is
    /// the real one: the CLI derives valid_until from it).
    pub fn start() -> Api {
        let mut child = Command::new("node")
            .arg("api-server.js")
            .current_dir(contract_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node api-server.js");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).expect("listening line");
        let url = format!("http://{}/api", v["listening"].as_str().unwrap());
        let mut api = Api {
            child,
            stdin,
            stdout,
            url,
        };
        api.call(json!({"cmd":"init"}));
        api
    }

    /// One control command; asserts it succeeded.
    pub fn call(&mut self, req: Value) -> Value {
        writeln!(self.stdin, "{req}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ok"], true, "{req}: {v}");
        v
    }

    /// How many messages were sent to the chain so far.
    pub fn sends(&mut self) -> usize {
        let r = self.call(json!({"cmd":"requests"}));
        r["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|q| q["path"] == "/api/v3/message" || q["path"] == "/api/v2/sendBoc")
            .count()
    }

    /// `get_channel()` of a payment channel: (state, deposit, claimed).
    pub fn channel(&mut self, addr: &str) -> (u64, u64, u64) {
        let r = self.call(json!({"cmd":"get","address":addr,"method":"get_channel","args":[]}));
        let n = |i: usize| {
            r["stack"][i]["value"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        (n(0), n(1), n(2))
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
