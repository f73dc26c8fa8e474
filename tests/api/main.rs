//! Integration tests against the real server on port 0, with a fresh PostgreSQL database each.

mod admin;
mod auth;
mod conversations;
mod embedded;
mod events;
mod helpers;
mod jobs;
mod presence;
mod pressure;
mod projects;
mod protocol;
mod reminders;
mod replay;
mod rest;
mod rest_streams;
mod tasks;
mod tokens;
mod users;
