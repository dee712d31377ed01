//! The few events an operator must see that no answer shows: one line each on the
//! component's standard error. The native host turns each line into a log line (target
//! `portcullis::component`); Spin writes it to its log. Lines name ids, kinds and
//! reasons, never an address, a password or a token.

/// Writes one line for the operator.
pub fn warn(message: &str) {
    // Lines stay lines: a reason with a newline would split into two log lines.
    eprintln!("{}", message.replace(['\r', '\n'], " "));
}
