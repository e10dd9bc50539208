//! End-to-end tests: the real services, driven over their real interfaces.
//! One test binary (modules below) so the suite links once.

// In tests a panic is the failure report; helpers unwrap like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod authorization_code;
mod bad_input;
mod browser;
mod client_credentials;
mod consent;
mod delegation;
mod device;
mod dpop;
mod keys;
mod lifecycle;
mod listener_limits;
mod mix_up;
mod pages;
mod private_key_jwt;
mod probes;
mod refresh;
mod resource_indicators;
mod resource_refusals;
mod standard_client;
mod support;
mod throttling;
mod tls;
mod transaction_tokens;
