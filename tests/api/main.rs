//! Integration tests against the real server on port 0, with a fresh PostgreSQL database each.

mod admin;
mod auth;
mod browser;
mod browsers;
mod conversations;
mod embedded;
mod events;
mod files;
mod helpers;
mod history;
mod jobs;
mod nul;
mod presence;
mod pressure;
mod projects;
mod protocol;
mod reminders;
mod replay;
mod rest;
mod rest_streams;
mod revocation;
mod signing_key;
mod tasks;
mod tokens;
mod transport;
mod users;
